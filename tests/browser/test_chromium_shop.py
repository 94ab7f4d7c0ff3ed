"""A visit to a demo shop in real headless Chromium, with Segment's unmodified analytics-next,
through the collector into the real broker; the events are read back field by field."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page

from pipeline.collector.server import ThreadedCollector
from pipeline.pii import PiiHasher
from pipeline.settings import CollectorBrowserSettings, KafkaSettings, WebhouseSettings
from pipeline.topics import Topics
from tests.browser.shop_server import ShopServer, chromium_browser, require_browser_deps
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SDK_VERSION = "1.84.3"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser_deps()
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def shop() -> Iterator[ShopServer]:
    with ShopServer() as server:
        yield server


def start_collector(kafka: KafkaSettings, shop: ShopServer, **browser: Any) -> ThreadedCollector:
    settings = collector_settings(
        kafka,
        browser=CollectorBrowserSettings(
            cors_allowed_origins=[shop.url],
            id_cookie_enabled=True,
            id_cookie_secure=False,  # plain http on loopback
            **browser,
        ),
    )
    return ThreadedCollector(settings)


def configure(shop: ShopServer, collector_url: str, **extra: Any) -> None:
    shop.config.update(
        {
            "collector": collector_url,
            "writeKey": WRITE_KEY,
            "sdkBase": shop.url,
            "idCookie": True,
            "policyVersion": "2026-11",
            **extra,
        }
    )


def settle(page: Page) -> None:
    """Wait until every tracking call of the page so far was delivered (or dropped by the gate)."""
    page.wait_for_function("() => window.shopPending !== undefined")
    page.evaluate("() => Promise.all(window.shopPending)")


def wait_until(page: Page, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the browser did not do it in time"
        page.wait_for_timeout(100)


STEPS = [
    ("page", "/index.html"),
    ("track", "Consent Granted"),
    ("page", "/product.html"),
    ("track", "Product Viewed"),
    ("track", "Product Added"),
    ("page", "/signin.html"),
    ("identify", "/signin.html"),
    ("track", "Signed In"),
    ("page", "/checkout.html"),
    ("track", "Order Completed"),
    ("track", "Consent Withdrawn"),
]


def test_a_visit_with_consent_reaches_the_broker_field_by_field(
    browser: Browser, shop: ShopServer, kafka_settings: KafkaSettings
) -> None:
    with start_collector(kafka_settings, shop) as collector:
        configure(shop, collector.url)
        context = browser.new_context()
        sent: list[str] = []
        context.on("request", lambda r: sent.append(r.url) if r.url.startswith(collector.url) else None)
        page = context.new_page()

        page.goto(f"{shop.url}/index.html")
        page.wait_for_load_state("networkidle")
        assert sent == [], "nothing may leave the browser before consent"
        _shop_with_consent(page)
        cookies = {c["name"]: c for c in context.cookies(collector.url)}
        document_cookie = page.evaluate("() => document.cookie")
        context.close()

    aid_cookie = cookies["webhouse_aid"]
    assert aid_cookie["httpOnly"] is True
    assert aid_cookie["sameSite"] == "Lax"
    lifetime = datetime.fromtimestamp(aid_cookie["expires"], UTC) - datetime.now(UTC)
    assert timedelta(days=394) < lifetime <= timedelta(days=395)
    assert "webhouse_aid" not in document_cookie  # scripts cannot read (or cap) it

    records = read_records(
        kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 11
    )
    records.sort(key=lambda r: (r["timestamp"], r["message_id"]))
    steps = [(r["type"], r["event"] or r["context"]["page"]["path"]) for r in records]
    assert steps == STEPS, "\n".join(map(str, steps))
    _check_every_event(records, aid_cookie["value"], shop)
    _check_each_step(dict(zip(steps, records, strict=True)), shop)


def _shop_with_consent(page: Page) -> None:
    """Accept the banner, view and add a product, sign in, buy, withdraw, then one more page."""
    page.click("#accept")
    settle(page)
    page.click("#to-product")
    page.wait_for_url("**/product.html")
    settle(page)
    page.click("#add")
    page.wait_for_url("**/signin.html")
    settle(page)
    page.fill("#email", "ann@example.com")
    page.click("#signin")
    page.wait_for_url("**/checkout.html")
    settle(page)
    page.click("#buy")
    settle(page)
    page.click("#withdraw")
    settle(page)
    page.click("#list")  # after the withdrawal: held back by the gate
    settle(page)


def _check_every_event(records: list[dict[str, Any]], anonymous_id: str, shop: ShopServer) -> None:
    """One visitor under the collector's cookie id, from the web, in order of time; signed-in
    events carry the customer id from identify on."""
    assert len({r["message_id"] for r in records}) == len(records)
    for record in records:
        assert record["anonymous_id"] == anonymous_id
        assert record["channel"] == "web"
        assert record["source"] == "shop"
        assert record["context"]["library"] == {"name": "analytics.js", "version": f"next-{SDK_VERSION}"}
        assert "HeadlessChrome" in record["context"]["user_agent"]
        assert record["context"]["page"]["url"].startswith(shop.url)
        assert record["timestamp"] <= record["sent_at"] <= record["received_at"] + timedelta(seconds=5)
        assert record["enrichment"] is None
    signed_in_from = STEPS.index(("identify", "/signin.html"))
    assert [r["user_id"] for r in records] == [None] * signed_in_from + ["cust-77"] * (11 - signed_in_from)


def _check_each_step(by_step: dict[tuple[str, str], dict[str, Any]], shop: ShopServer) -> None:
    """The page, commerce, traits and consent fields of each step, as the shop's pages send them."""
    product_page = by_step[("page", "/product.html")]["context"]["page"]
    assert product_page == {
        "url": f"{shop.url}/product.html",
        "path": "/product.html",
        "referrer": f"{shop.url}/index.html",
        "title": "Blue Mug | Mug Shop",
        "search": "",
    }
    viewed = by_step[("track", "Product Viewed")]["commerce"]
    assert viewed["currency"] == "EUR"
    [mug] = viewed["products"]
    assert (mug["product_id"], mug["sku"], mug["name"], mug["category"], mug["price"]) == (
        "p-1",
        "MUG-BLUE",
        "Blue Mug",
        "kitchen",
        12.5,
    )
    added = by_step[("track", "Product Added")]["commerce"]
    assert added["cart_id"] == "cart-1"
    assert added["products"][0]["quantity"] == 2

    identify = by_step[("identify", "/signin.html")]
    # The collector keyed-hashes the address before Kafka (pipeline/collector/pseudonymise.py).
    assert identify["traits"]["email"] == PiiHasher(WebhouseSettings().pii_hmac_secret).hash(
        "email", "ann@example.com"
    )
    assert identify["traits"]["first_name"] == "Ann"
    assert by_step[("track", "Signed In")]["properties"]["method"] == '"password"'

    order = by_step[("track", "Order Completed")]["commerce"]
    assert (order["order_id"], order["total"], order["revenue"], order["tax"]) == ("o-1001", 30.0, 25.0, 5.0)
    assert (order["currency"], order["coupon"]) == ("EUR", "WELCOME")
    assert [(p["product_id"], p["quantity"], p["price"]) for p in order["products"]] == [("p-1", 2, 12.5)]

    for name in ("Consent Granted", "Consent Withdrawn"):
        consent = by_step[("track", name)]["consent"]
        assert consent == {
            "purposes": ["analytics", "personalisation"],
            "source": "banner",
            "policy_version": "2026-11",
        }


def test_retries_keep_the_message_id_and_batches_pass_the_preflight(
    browser: Browser, shop: ShopServer, kafka_settings: KafkaSettings
) -> None:
    """The first delivery of Product Viewed is acknowledged by the broker but answered 503 (a
    lost answer): analytics-next retries with the same messageId, which is what lets the
    processors drop the copy. The batching mode posts /v1/b with an Authorization header,
    which the browser preflights."""
    seen: list[tuple[str, str]] = []
    failed: list[str] = []
    armed: list[bool] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, request.path))
        return await handler(request)

    @web.middleware
    async def lose_first_answer(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/v1/t" and armed and not failed:
            failed.append(request.path)
            return web.json_response({"success": False, "code": "kafka_unavailable"}, status=503)
        return response

    collector = start_collector(kafka_settings, shop)
    collector.server.app.middlewares.insert(0, record)  # outside CORS: sees the preflights too
    collector.server.app.middlewares.append(lose_first_answer)
    with collector:
        configure(shop, collector.url)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{shop.url}/index.html")
        page.click("#accept")
        settle(page)
        armed.append(True)  # the next /v1/t is the product page's Product Viewed
        before = len(seen)
        page.goto(f"{shop.url}/product.html")
        settle(page)
        wait_until(page, lambda: seen[before:].count(("POST", "/v1/t")) >= 2)  # the SDK's retry
        context.close()

        configure(shop, collector.url, batching=3)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{shop.url}/index.html")
        page.click("#accept")  # page + Consent Granted: 2 of 3
        settle(page)
        assert ("POST", "/v1/b") not in seen  # two events wait for a third
        page.evaluate("() => { analytics.track('Cart Viewed', {cart_id: 'cart-9'}); }")  # the batch leaves
        wait_until(page, lambda: ("POST", "/v1/b") in seen)
        # A page's own last word on leaving: navigator.sendBeacon posts text/plain, write key inside.
        queued = page.evaluate(
            """([url, key]) => navigator.sendBeacon(url + "/v1/track", JSON.stringify({
                writeKey: key, type: "track", event: "Page Left", anonymousId: "beacon-visitor",
                messageId: "beacon-1", properties: {seconds_on_page: 42}}))""",
            [collector.url, WRITE_KEY],
        )
        assert queued is True
        wait_until(page, lambda: ("POST", "/v1/track") in seen)
        context.close()
    assert failed == ["/v1/t"]

    records = read_records(
        kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 5 + 3 + 1
    )
    # The lost answer is retried with the same messageId (more than once when the machine is slow
    # enough for the SDK's own timeout to fire too): copies, never a new id.
    viewed = [r for r in records if r["event"] == "Product Viewed"]
    assert len(viewed) >= 2
    assert len({r["message_id"] for r in viewed}) == 1
    assert ("OPTIONS", "/v1/b") in seen and ("POST", "/v1/b") in seen
    distinct = list({r["message_id"]: r for r in records}.values())
    assert sorted(r["event"] or r["type"] for r in distinct) == sorted(
        [
            "page",
            "Consent Granted",
            "page",
            "Product Viewed",
            "page",
            "Consent Granted",
            "Cart Viewed",
            "Page Left",
        ]
    )
    beacon = next(r for r in records if r["message_id"] == "beacon-1")
    assert (beacon["event"], beacon["anonymous_id"]) == ("Page Left", "beacon-visitor")
    assert beacon["properties"]["seconds_on_page"] == "42"
