"""Serving a Prometheus registry for the services without an HTTP server of their own
(worker, triggers app, sink): all bind ``metrics.host``:``metrics.port`` alike, and refuse
default secrets when that address is reachable from other machines."""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from pipeline.health import HealthView, health_routes
from pipeline.safe_defaults import Service, refuse_default_secrets
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: no log
        pass


def serve_metrics(
    settings: Settings, service: Service, registry: CollectorRegistry, health: HealthView | None = None
) -> str | None:
    """Start the endpoint in a daemon thread; returns its URL, or None when ``metrics.port`` is 0.
    With ``health``, ``/health`` and ``/health/ready`` are served there too.

    A taken port is logged, not raised: the service still runs (and Prometheus reports the
    target down), as two services left on the same default port on one host would be.
    """
    metrics = settings.metrics
    if not metrics.port:
        return None
    refuse_default_secrets(settings, service, metrics.host)
    try:
        app = make_wsgi_app(registry)
        if health is not None:
            app = health_routes(health, app)
        server = make_server(metrics.host, metrics.port, app, _ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        log.error(
            "%s metrics NOT served on %s:%s (metrics.host/metrics.port): %s",
            service, metrics.host, metrics.port, exc,
        )  # fmt: skip
        return None
    threading.Thread(target=server.serve_forever, name=f"{service}-metrics", daemon=True).start()
    url = f"http://{metrics.host}:{metrics.port}/metrics"
    log.info("%s metrics on %s", service, url)
    return url
