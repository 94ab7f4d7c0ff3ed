"""rudder-sdk-python against the real collector and broker: gzip bodies, a batch-level
``sentAt``, explicit nulls, identify traits only in ``context.traits``, and its constant
top-level ``channel: "server"``. Every call type is checked field by field on the raw topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rudderstack.analytics.client import Client
from rudderstack.analytics.version import VERSION as RUDDER_VERSION

from pipeline.collector.server import ThreadedCollector
from pipeline.pii import PiiHasher
from pipeline.settings import KafkaSettings, WebhouseSettings
from pipeline.topics import Topics
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records

pytestmark = pytest.mark.kafka


def props(record: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in record["properties"].items()}


def test_every_call_type_lands_whole(kafka_settings: KafkaSettings) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    at = [t0 + timedelta(seconds=i) for i in range(6)]
    with ThreadedCollector(collector_settings(kafka_settings)) as collector:
        client = Client(WRITE_KEY, host=collector.url, gzip=True, upload_size=3, max_retries=2)
        try:
            _send_every_call(client, at)
            client.flush()
        finally:
            client.shutdown()
        accepted = collector.metrics.registry.get_sample_value(
            "webhouse_collector_events_accepted_total", {"source": "shop", "type": "identify"}
        )
    assert accepted == 1

    records = read_records(
        kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 6
    )
    by_id = {r["message_id"]: r for r in records}
    assert sorted(by_id) == ["m-alias", "m-group", "m-identify", "m-page", "m-screen", "m-track"]
    for i, mid in enumerate(["m-identify", "m-track", "m-page", "m-screen", "m-group", "m-alias"]):
        record = by_id[mid]
        assert record["timestamp"] == at[i]
        assert record["sent_at"] is not None and record["sent_at"] >= at[i]  # the batch's sentAt
        assert record["source"] == "shop"
        assert record["context"]["library"] == {"name": "analytics-python", "version": RUDDER_VERSION}
        assert props(record).get("$integrations") == {"All": True}

    _check_identify_and_track(by_id["m-identify"], by_id["m-track"])
    _check_page_screen_group_alias(by_id)


def _send_every_call(client: Client, at: list[datetime]) -> None:
    """One call of each type through rudder-sdk-python (queued; the caller flushes)."""
    client.identify(
        "cust-1",
        {
            "email": "Ada@Example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "address": {"city": "London"},
            "tier": "gold",
            "phone": None,
        },
        anonymous_id="anon-1",
        timestamp=at[0],
        message_id="m-identify",
    )
    client.track(
        "cust-1",
        "Product Viewed",
        {"product_id": "p-1", "price": 12.5, "coupon": None, "shelf": "top"},
        anonymous_id="anon-1",
        timestamp=at[1],
        message_id="m-track",
    )
    client.page(
        "cust-1",
        category="Docs",
        name="Home",
        properties={"url": "https://shop.example/", "title": "Shop"},
        anonymous_id="anon-1",
        timestamp=at[2],
        message_id="m-page",
    )
    client.screen("cust-1", name="Cart", properties={"items": 2}, timestamp=at[3], message_id="m-screen")
    client.group("cust-1", "g-1", {"name": "Initech"}, timestamp=at[4], message_id="m-group")
    client.alias("anon-1", "cust-1", timestamp=at[5], message_id="m-alias")


def _check_identify_and_track(identify: dict[str, Any], track: dict[str, Any]) -> None:
    """Traits typed, hashed and kept as extra; the product typed, the untyped property kept."""
    assert (identify["type"], identify["user_id"], identify["anonymous_id"]) == (
        "identify",
        "cust-1",
        "anon-1",
    )
    traits = identify["traits"]
    assert (traits["first_name"], traits["last_name"], traits["city"]) == ("Ada", "Lovelace", "London")
    assert traits["email"] == PiiHasher(WebhouseSettings().pii_hmac_secret).hash("email", "ada@example.com")
    assert traits["phone"] is None
    assert {k: json.loads(v) for k, v in traits["extra"].items()} == {"tier": "gold"}
    assert identify["channel"] == "server"
    assert set(props(identify)) == {"$integrations"}

    assert (track["type"], track["event"], track["channel"]) == ("track", "Product Viewed", "server")
    product = track["commerce"]["products"][0]
    assert (product["product_id"], product["price"]) == ("p-1", 12.5)
    assert track["commerce"]["coupon"] is None  # an explicit null is a typed field's null
    assert props(track) == {"$integrations": {"All": True}, "shelf": "top"}


def _check_page_screen_group_alias(by_id: dict[str, dict[str, Any]]) -> None:
    """The other calls' fields, and the library's top-level channel kept where it is not the result."""
    page = by_id["m-page"]
    assert (page["type"], page["name"], page["channel"]) == ("page", "Home", "web")
    assert page["context"]["page"]["url"] == "https://shop.example/"
    assert page["context"]["page"]["title"] == "Shop"
    assert props(page) == {"$integrations": {"All": True}, "$category": "Docs", "$channel": "server"}

    screen = by_id["m-screen"]
    assert (screen["type"], screen["name"], screen["channel"], screen["anonymous_id"]) == (
        "screen",
        "Cart",
        "app",
        None,
    )
    assert props(screen) == {"$integrations": {"All": True}, "items": 2, "$channel": "server"}

    group = by_id["m-group"]
    assert (group["type"], group["group_id"], group["traits"], group["channel"]) == (
        "group",
        "g-1",
        None,
        "server",
    )
    assert props(group) == {"$integrations": {"All": True}, "$traits.name": "Initech"}

    alias = by_id["m-alias"]
    assert (alias["type"], alias["previous_id"], alias["user_id"], alias["channel"]) == (
        "alias",
        "anon-1",
        "cust-1",
        "server",
    )
