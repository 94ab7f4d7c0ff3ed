"""What browsers need from the collector: CORS, and a first-party anonymous-id cookie.

CORS. A shop page posts events from its own origin to the collector's. Browser SDKs
send two kinds of requests: "simple" ones (Segment's analytics.js posts ``text/plain``
precisely so that no preflight is needed; ``navigator.sendBeacon`` does the same) and
ones with an ``Authorization`` header (batching mode), which the browser preflights
with ``OPTIONS``. The middleware answers preflights itself, adds the response headers
for allowed origins (echoing the origin, never ``*``, so credentialed requests such as
the id cookie work), and refuses a browser post from any other origin with 403: a
simple request reaches the server whatever CORS says, so the check must be ours.
Requests without ``Origin`` (servers, apps, mail clients) and same-origin requests
(the collector served on the site's own host) pass untouched.

Id cookie. Safari and others cap cookies that *scripts* set at 7 days, so a visitor's
anonymous id written by an SDK to ``document.cookie`` expires between visits. A cookie
set by an HTTP response of the site's own domain, ``HttpOnly``, is not capped that way.
``GET /v1/id`` returns the visitor's id (``{"anonymousId": ...}``), minting one on the
first visit, and sets or refreshes the cookie with the configured lifetime (13 months
by default, the CNIL limit). The page hands the id to its SDK (``setAnonymousId``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from pipeline.settings import CollectorBrowserSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOWED_METHODS = "GET, POST, OPTIONS"
EXPOSED_HEADERS = "Retry-After"
ID_PATH = "/v1/id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def origin_allowed(origin: str, patterns: Sequence[str]) -> bool:
    """``origin`` is ``scheme://host[:port]``; patterns are exact, ``scheme://*.domain`` or ``*``."""
    origin = origin.rstrip("/").lower()
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    for pattern in patterns:
        pattern = pattern.rstrip("/").lower()
        if pattern in ("*", origin):
            return True
        if "://*." in pattern:
            scheme, _, domain = pattern.partition("://*.")
            if parts.scheme == scheme and origin.partition("://")[2].endswith("." + domain):
                return True
    return False


def _same_origin(request: web.Request, origin: str) -> bool:
    return urlsplit(origin).netloc.lower() == (request.host or "").lower()


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }


def cors_middleware(settings: CollectorBrowserSettings) -> Middleware:
    patterns = tuple(settings.cors_allowed_origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or _same_origin(request, origin):
            return await handler(request)
        allowed = origin_allowed(origin, patterns)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not allowed:
                return web.json_response({"error": "origin_not_allowed", "origin": origin}, status=403)
            headers = _cors_headers(origin)
            headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                headers["Access-Control-Allow-Headers"] = requested
            headers["Access-Control-Max-Age"] = str(settings.cors_max_age_s)
            return web.Response(status=204, headers=headers)
        if not allowed:
            return web.json_response({"error": "origin_not_allowed", "origin": origin}, status=403)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(_cors_headers(origin))
            raise
        response.headers.update(_cors_headers(origin))
        return response

    return cors


def id_cookie_handler(settings: CollectorBrowserSettings) -> Handler:
    """``GET /v1/id``: the visitor's anonymous id, from (and refreshed into) the cookie."""

    async def anonymous_id(request: web.Request) -> web.StreamResponse:
        if not settings.id_cookie_enabled:
            raise web.HTTPNotFound(text="the id cookie endpoint is off (collector.browser.id_cookie_enabled)")
        current = request.cookies.get(settings.id_cookie_name, "")
        visitor = current if _SAFE_ID.fullmatch(current) else str(uuid.uuid4())
        response = web.json_response({"anonymousId": visitor}, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            settings.id_cookie_name,
            visitor,
            max_age=settings.id_cookie_max_age_days * 24 * 3600,
            path="/",
            domain=settings.id_cookie_domain,
            secure=settings.id_cookie_secure,
            httponly=True,
            samesite=settings.id_cookie_samesite,
        )
        return response

    return anonymous_id


def add_browser_routes(app: web.Application, settings: CollectorBrowserSettings) -> None:
    app.router.add_get(ID_PATH, id_cookie_handler(settings))
