"""``GET /v1/projects/<write key>/settings``: the settings document Segment's SDKs fetch at start.

analytics.js (``cdnURL``), analytics-swift and analytics-kotlin (``cdnHost``) read their
configuration from ``<cdn>/v1/projects/<write key>/settings`` before sending anything.
Served here, an SDK needs only its two hosts pointed at the collector: the document
names the collector itself as the destination (``Segment.io`` with ``apiHost`` =
this host + ``/v1``) and enables nothing else, so no request ever leaves for a vendor.
Every key gets the same document (its own key echoed back): the answer must not tell a
stranger whether a guessed write key is valid. Ingest checks the key, and refuses a bad one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.settings import CollectorSettings

SETTINGS_PATH = "/v1/projects/{write_key}/settings"


def sdk_settings(write_key: str, host: str, protocol: str) -> dict[str, Any]:
    return {
        "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": protocol}},
        "plan": {"track": {"__default": {"enabled": True}}, "identify": {"__default": {"enabled": True}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def add_sdk_settings_route(app: web.Application, settings: CollectorSettings) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        write_key = request.match_info["write_key"]
        # Behind a TLS-terminating proxy the original scheme and host come in X-Forwarded-*.
        protocol = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        return web.json_response(
            sdk_settings(write_key, host, protocol),
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    app.router.add_get(SETTINGS_PATH, handle)
