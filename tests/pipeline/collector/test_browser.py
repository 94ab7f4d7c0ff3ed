"""CORS and the id cookie, on a bare aiohttp app (no broker): what browsers are told."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.browser import add_browser_routes, cors_middleware, origin_allowed
from pipeline.settings import CollectorBrowserSettings

SHOP = "https://shop.example"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://shop.example", True),
        ("https://shop.example/", True),
        ("HTTPS://SHOP.EXAMPLE", True),
        ("https://www.shop.example", True),  # via https://*.shop.example
        ("https://a.b.shop.example", True),
        ("http://www.shop.example", False),  # scheme differs
        ("https://evilshop.example", False),
        ("https://shop.example.evil.example", False),
        ("https://shop.example:8443", False),
        ("null", False),
        ("file://", False),
    ],
)
def test_origin_patterns(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, [SHOP, "https://*.shop.example"]) is allowed


def test_star_allows_any_web_origin() -> None:
    assert origin_allowed("http://localhost:3000", ["*"])
    assert not origin_allowed("null", ["*"])


def run(
    settings: CollectorBrowserSettings, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application(middlewares=[cors_middleware(settings)])
        app.router.add_post("/v1/t", echo)
        add_browser_routes(app, settings)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


def test_preflight_for_an_allowed_origin() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        response = await client.options(
            "/v1/t",
            headers={
                "Origin": SHOP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == SHOP
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
        assert response.headers["Access-Control-Max-Age"] == "600"
        assert response.headers["Vary"] == "Origin"

    run(CollectorBrowserSettings(cors_allowed_origins=[SHOP]), scenario)


def test_other_origins_are_refused_preflight_or_not() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        evil = {"Origin": "https://evil.example"}
        preflight = await client.options("/v1/t", headers={**evil, "Access-Control-Request-Method": "POST"})
        assert preflight.status == 403
        assert "Access-Control-Allow-Origin" not in preflight.headers
        # A text/plain post needs no preflight, so the browser sends it anyway: refused here.
        simple = await client.post("/v1/t", data=b"{}", headers={**evil, "Content-Type": "text/plain"})
        assert simple.status == 403
        assert (await simple.json())["error"] == "origin_not_allowed"

    run(CollectorBrowserSettings(cors_allowed_origins=[SHOP]), scenario)


def test_allowed_posts_get_cors_headers_and_servers_pass_untouched() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        response = await client.post("/v1/t", data=b"{}", headers={"Origin": SHOP})
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == SHOP
        assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"
        server = await client.post("/v1/t", data=b"{}")  # no Origin: a server or an app
        assert server.status == 200
        assert "Access-Control-Allow-Origin" not in server.headers
        # Same origin (collector served on the site's own host) needs no allow-list entry.
        own = f"http://{client.host}:{client.port}"
        assert (await client.post("/v1/t", data=b"{}", headers={"Origin": own})).status == 200

    run(CollectorBrowserSettings(cors_allowed_origins=[SHOP]), scenario)


def test_id_cookie_is_minted_then_kept_and_refreshed() -> None:
    settings = CollectorBrowserSettings(
        id_cookie_enabled=True, id_cookie_max_age_days=30, id_cookie_domain="shop.example"
    )

    async def scenario(client: TestClient[Any, Any]) -> None:
        first = await client.get("/v1/id")
        assert first.status == 200
        assert first.headers["Cache-Control"] == "no-store"
        visitor = (await first.json())["anonymousId"]
        cookie = first.cookies["webhouse_aid"]
        assert cookie.value == visitor
        assert cookie["httponly"] is True
        assert cookie["secure"] is True
        assert cookie["samesite"] == "Lax"
        assert cookie["max-age"] == str(30 * 24 * 3600)
        assert cookie["domain"] == "shop.example"
        again = await client.get("/v1/id", headers={"Cookie": f"webhouse_aid={visitor}"})
        assert (await again.json())["anonymousId"] == visitor
        assert again.cookies["webhouse_aid"]["max-age"] == str(30 * 24 * 3600)  # refreshed
        forged = await client.get("/v1/id", headers={"Cookie": "webhouse_aid=<script>"})
        assert (await forged.json())["anonymousId"] != "<script>"

    run(settings, scenario)


def test_id_cookie_endpoint_is_off_by_default() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/v1/id")).status == 404

    run(CollectorBrowserSettings(), scenario)


def test_cookie_lifetime_cannot_exceed_13_months() -> None:
    with pytest.raises(ValueError):
        CollectorBrowserSettings(id_cookie_max_age_days=400)


def test_sdk_settings_document_points_sdks_back_at_the_collector() -> None:
    from pipeline.collector.sdk_settings import add_sdk_settings_route
    from pipeline.settings import CollectorSettings

    async def main() -> None:
        app = web.Application()
        add_sdk_settings_route(app, CollectorSettings(write_keys={"app-key": "ios"}))
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/v1/projects/app-key/settings")
            assert response.status == 200
            segmentio = (await response.json())["integrations"]["Segment.io"]
            assert segmentio == {
                "apiKey": "app-key",
                "apiHost": f"{client.host}:{client.port}/v1",
                "protocol": "http",
            }
            proxied = await client.get(
                "/v1/projects/app-key/settings",
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "collect.shop.example"},
            )
            segmentio = (await proxied.json())["integrations"]["Segment.io"]
            assert (segmentio["apiHost"], segmentio["protocol"]) == ("collect.shop.example/v1", "https")
            # No write-key oracle: a guessed key gets the same answer, its own key echoed.
            guessed = await client.get("/v1/projects/other-key/settings")
            assert guessed.status == 200
            document = await guessed.json()
            document["integrations"]["Segment.io"]["apiKey"] = "app-key"
            assert document == await response.json()

    asyncio.run(main())
