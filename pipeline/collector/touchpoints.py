"""The collector's touchpoint extensions, registered by ``app.build_app`` in one call each.

- Browsers (browser.py): CORS middleware; Segment analytics.js's short endpoint paths
  (``/v1/t``, ``/v1/p``, ``/v1/i``, ``/v1/s``, ``/v1/g``, ``/v1/a`` and ``/v1/b`` for
  its batching mode), which take the same handler as the long ones; the optional
  ``/v1/id`` first-party id cookie.
- SDK start-up (sdk_settings.py): the settings document Segment's SDKs fetch from their
  CDN, served by the collector so that pointing an SDK's hosts here is all it takes.
- E-mail (email_tracking.py): open pixel, click redirect, Mailgun webhook.

Both hand events to the same ``Ingestor`` as the Segment endpoints.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from pipeline.collector.browser import add_browser_routes, cors_middleware
from pipeline.collector.email_tracking import IngestorOf, add_email_routes
from pipeline.collector.sdk_settings import add_sdk_settings_route
from pipeline.settings import CollectorSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# analytics.js (analytics-next) posts each call to apiHost + "/" + the type's first letter.
SHORT_PATHS = {
    "t": "track",
    "p": "page",
    "i": "identify",
    "s": "screen",
    "g": "group",
    "a": "alias",
    "b": "batch",
}

# navigator.sendBeacon and analytics.js send text/plain so that browsers need no preflight.
BROWSER_CONTENT_TYPES = frozenset({"application/json", "text/plain"})


def middlewares(settings: CollectorSettings) -> list[Middleware]:
    return [cors_middleware(settings.browser)]


def add_routes(
    app: web.Application,
    settings: CollectorSettings,
    segment_handler: Callable[[str], Handler],
    ingestor_of: IngestorOf,
) -> None:
    for short, endpoint in SHORT_PATHS.items():
        app.router.add_post(f"/v1/{short}", segment_handler(endpoint))
    add_browser_routes(app, settings.browser)
    add_sdk_settings_route(app, settings)
    add_email_routes(app, settings.email, ingestor_of)
