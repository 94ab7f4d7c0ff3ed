"""Serving a Prometheus registry for the services without an HTTP server of their own
(worker, triggers app, sink): all bind ``metrics.host``:``metrics.port`` alike, and refuse
default secrets when that address is reachable from other machines."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server

from pipeline.safe_defaults import Service, refuse_default_secrets
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def serve_metrics(settings: Settings, service: Service, registry: CollectorRegistry) -> str | None:
    """Start the endpoint in a daemon thread; returns its URL, or None when ``metrics.port`` is 0.

    A taken port is logged, not raised: the service still runs (and Prometheus reports the
    target down), as two services left on the same default port on one host would be.
    """
    metrics = settings.metrics
    if not metrics.port:
        return None
    refuse_default_secrets(settings, service, metrics.host)
    try:
        start_http_server(metrics.port, addr=metrics.host, registry=registry)
    except OSError as exc:
        log.error(
            "%s metrics NOT served on %s:%s (metrics.host/metrics.port): %s",
            service, metrics.host, metrics.port, exc,
        )  # fmt: skip
        return None
    url = f"http://{metrics.host}:{metrics.port}/metrics"
    log.info("%s metrics on %s", service, url)
    return url
