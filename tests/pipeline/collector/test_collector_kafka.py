"""The collector against the real broker: a real Segment client in, Avro records out; every
bad-input class with its HTTP answer and dead letter; Kafka down -> 503 in bounded time."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import requests
from segment.analytics.client import Client
from segment.analytics.version import VERSION as SEGMENT_VERSION

from pipeline.collector.server import ThreadedCollector
from pipeline.pii import PiiHasher
from pipeline.serde import SingleObjectSerde
from pipeline.settings import CollectorSettings, KafkaSettings, Settings, WebhouseSettings
from pipeline.topics import Topics
from tests.pipeline.collector.kafka_read import read_topic

pytestmark = pytest.mark.kafka

KEY = "test-write-key"
AUTH = (KEY, "")
EVENTS = SingleObjectSerde("customer_event")
LETTERS = SingleObjectSerde("dead_letter")
PII = PiiHasher(WebhouseSettings().pii_hmac_secret)
T0 = datetime(2026, 11, 23, 9, 30, 15, 250000, tzinfo=UTC)


def collector_settings(kafka: KafkaSettings, **collector: Any) -> Settings:
    base: dict[str, Any] = {"port": 0, "write_keys": {KEY: "shop-web"}, "produce_timeout_s": 10.0}
    return Settings(kafka=kafka, collector=CollectorSettings(**{**base, **collector}))


@pytest.fixture
def collector(kafka_settings: KafkaSettings) -> Iterator[ThreadedCollector]:
    with ThreadedCollector(
        collector_settings(kafka_settings, max_body_bytes=8192, max_event_bytes=2048)
    ) as c:
        yield c


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> Topics:
    return Topics.from_settings(kafka_settings)


def raw_events(kafka_settings: KafkaSettings, count: int) -> list[dict[str, Any]]:
    topic = Topics.from_settings(kafka_settings).raw_events
    return [
        EVENTS.decode(cast(bytes, m.value()))
        for m in read_topic(kafka_settings.bootstrap_servers, topic, count)
    ]


def dead_letters(kafka_settings: KafkaSettings, count: int) -> list[dict[str, Any]]:
    topic = Topics.from_settings(kafka_settings).dead_letters
    return [
        LETTERS.decode(cast(bytes, m.value()))
        for m in read_topic(kafka_settings.bootstrap_servers, topic, count)
    ]


def post(url: str, body: bytes | dict[str, Any], **kwargs: Any) -> requests.Response:
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    kwargs.setdefault("timeout", 30)
    return requests.post(url, data=data, headers=headers, **kwargs)


def test_segment_client_events_arrive_field_by_field(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    _send_every_call(Client(KEY, host=collector.url, sync_mode=True, max_retries=0, gzip=True))
    after = datetime.now(UTC) + timedelta(seconds=1)

    records = {r["message_id"]: r for r in raw_events(kafka_settings, 6)}
    assert set(records) == {"m-identify", "m-order", "m-page", "m-screen", "m-alias", "m-group"}
    for record in records.values():
        assert record["timestamp"] == T0
        assert record["source"] == "shop-web"
        assert before <= record["received_at"] <= after
        assert record["sent_at"] is not None and before <= record["sent_at"] <= after
        assert record["context"]["library"] == {"name": "analytics-python", "version": SEGMENT_VERSION}
        assert record["enrichment"] is None

    _check_identify_and_order(records["m-identify"], records["m-order"])
    _check_page_screen_alias_group(records)

    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert 'webhouse_collector_events_accepted_total{source="shop-web",type="track"} 1.0' in metrics


def _send_every_call(client: Client) -> None:
    """One call of each type through analytics-python, each sent at once (sync mode)."""
    client.identify(
        "cust-42",
        {"email": "ada@example.com", "firstName": "Ada", "plan": "gold", "vip": True},
        anonymous_id="anon-7",
        timestamp=T0,
        message_id="m-identify",
    )
    client.track(
        "cust-42",
        "Order Completed",
        {
            "order_id": "o-1",
            "revenue": 25.5,
            "currency": "EUR",
            "products": [{"product_id": "p-1", "sku": "S1", "price": 12.75, "quantity": 2}],
            "gift_wrap": True,
        },
        context={"ip": "203.0.113.9", "campaign": {"source": "newsletter", "medium": "email"}},
        timestamp=T0,
        anonymous_id="anon-7",
        message_id="m-order",
    )
    client.page(
        "cust-42",
        "Shop",
        "Home",
        {"url": "https://shop.example/", "title": "Home"},
        timestamp=T0,
        anonymous_id="anon-7",
        message_id="m-page",
    )
    client.screen("cust-42", None, "Cart", {"items": 2}, timestamp=T0, message_id="m-screen")
    client.alias("anon-7", "cust-42", timestamp=T0, message_id="m-alias")
    client.group("cust-42", "acme", {"name": "Acme"}, timestamp=T0, message_id="m-group")


def _check_identify_and_order(identify: dict[str, Any], order: dict[str, Any]) -> None:
    """Traits typed and hashed; the order's commerce typed, its IP hashed before Kafka."""
    assert (identify["type"], identify["user_id"], identify["anonymous_id"]) == (
        "identify",
        "cust-42",
        "anon-7",
    )
    traits = identify["traits"]
    assert (traits["email"], traits["first_name"], traits["plan"]) == (
        PII.hash("email", "ada@example.com"),
        "Ada",
        "gold",
    )
    assert traits["extra"] == {"vip": "true"}
    assert identify["channel"] == "server"

    assert (order["type"], order["event"]) == ("track", "Order Completed")
    commerce = order["commerce"]
    assert (commerce["order_id"], commerce["revenue"], commerce["currency"]) == ("o-1", 25.5, "EUR")
    (product,) = commerce["products"]
    assert (product["product_id"], product["sku"], product["price"], product["quantity"]) == (
        "p-1",
        "S1",
        12.75,
        2,
    )
    assert order["properties"] == {"gift_wrap": "true"}
    assert order["context"]["ip"] == PII.hash("ip", "203.0.113.9")  # keyed-hashed before Kafka
    assert "$ip_network" not in order["properties"]  # kept for geo only when geo is configured
    assert order["context"]["campaign"]["source"] == "newsletter"


def _check_page_screen_alias_group(records: dict[str, dict[str, Any]]) -> None:
    page = records["m-page"]
    assert (page["type"], page["name"], page["channel"]) == ("page", "Home", "web")
    assert page["context"]["page"]["url"] == "https://shop.example/"
    assert page["properties"] == {"$category": '"Shop"'}

    screen = records["m-screen"]
    assert (screen["type"], screen["name"], screen["channel"], screen["properties"]) == (
        "screen",
        "Cart",
        "app",
        {"items": "2"},
    )
    alias = records["m-alias"]
    assert (alias["type"], alias["previous_id"], alias["user_id"]) == ("alias", "anon-7", "cust-42")
    group = records["m-group"]
    assert (group["type"], group["group_id"], group["properties"]) == (
        "group",
        "acme",
        {"$traits.name": '"Acme"'},
    )


def test_one_visitor_lands_on_one_partition_in_order(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    batch = [
        {
            "type": "track",
            "event": f"Step {i}",
            "anonymousId": "anon-9",
            "userId": "u" if i % 2 else None,
            "messageId": f"s{i}",
        }
        for i in range(10)
    ]
    assert post(f"{collector.url}/v1/batch", {"batch": batch}, auth=AUTH).status_code == 200
    topic = Topics.from_settings(kafka_settings).raw_events
    messages = read_topic(kafka_settings.bootstrap_servers, topic, 10)
    assert {m.partition() for m in messages} == {messages[0].partition()}
    assert {m.key() for m in messages} == {b"anon-9"}
    assert [EVENTS.decode(cast(bytes, m.value()))["message_id"] for m in messages] == [
        f"s{i}" for i in range(10)
    ]


def test_write_key_in_the_body_and_no_message_id(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    body = {
        "writeKey": KEY,
        "batch": [{"type": "track", "event": "X", "userId": "u1", "timestamp": "2026-11-23T09:00:00Z"}],
    }
    first = post(f"{collector.url}/v1/batch", body)
    retry = post(f"{collector.url}/v1/batch", body)
    assert first.status_code == retry.status_code == 200
    a, b = raw_events(kafka_settings, 2)
    assert a["message_id"] == b["message_id"]  # a retried body keeps its id
    assert a["user_id"] == "u1" and "writeKey" not in json.dumps(a, default=str)


def test_client_ip_is_stamped_when_the_event_has_none(kafka_settings: KafkaSettings) -> None:
    event = {"type": "track", "event": "X", "userId": "u1", "timestamp": "2026-11-23T09:00:00Z"}
    own_ip = {**event, "context": {"ip": "203.0.113.7"}}
    forwarded = {"X-Forwarded-For": "198.51.100.4, 10.0.0.1"}
    with ThreadedCollector(collector_settings(kafka_settings)) as direct:
        assert post(f"{direct.url}/v1/track", event, auth=AUTH, headers=forwarded).status_code == 200
        assert post(f"{direct.url}/v1/track", own_ip, auth=AUTH).status_code == 200
    with ThreadedCollector(collector_settings(kafka_settings, trust_forwarded_for=True)) as proxied:
        assert post(f"{proxied.url}/v1/track", event, auth=AUTH, headers=forwarded).status_code == 200
    ips = sorted(e["context"]["ip"] for e in raw_events(kafka_settings, 3))
    # Untrusted X-Forwarded-For is ignored (peer address); an event's own ip wins; a trusted proxy's
    # first hop is the client.
    assert ips == sorted(PII.hash("ip", ip) for ip in ["127.0.0.1", "198.51.100.4", "203.0.113.7"])


def test_bad_json_is_refused_and_dead_lettered(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    body = b'{"batch": [{"type": "track", '
    response = post(f"{collector.url}/v1/batch", body, auth=AUTH, headers={"User-Agent": "shop/1"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json" and response.json()["success"] is False
    (letter,) = dead_letters(kafka_settings, 1)
    assert (letter["stage"], letter["reason"], letter["payload"]) == ("collector", "invalid_json", body)
    assert letter["headers"]["source"] == "shop-web" and letter["headers"]["endpoint"] == "/v1/batch"
    assert letter["headers"]["user_agent"] == "shop/1"


def test_bad_json_without_a_header_key_is_not_dead_lettered(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    assert post(f"{collector.url}/v1/batch", b"{not json").status_code == 400
    # A later dead letter is the first on the (single-partition) topic: none was written before it.
    assert post(f"{collector.url}/v1/batch", b"[1, ", auth=AUTH).status_code == 400
    (letter,) = dead_letters(kafka_settings, 1)
    assert letter["payload"] == b"[1, "


def test_oversized_body_gets_413_and_no_dead_letter(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    big = {"batch": [{"type": "track", "event": "X", "anonymousId": "a", "properties": {"p": "x" * 9000}}]}
    response = post(f"{collector.url}/v1/batch", big, auth=AUTH)
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    # A gzip body that inflates past the limit is refused the same way.
    bomb = gzip.compress(json.dumps(big).encode())
    assert len(bomb) < 8192
    response = post(f"{collector.url}/v1/batch", bomb, auth=AUTH, headers={"Content-Encoding": "gzip"})
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    post(f"{collector.url}/v1/batch", b"sentinel", auth=AUTH)
    (letter,) = dead_letters(kafka_settings, 1)
    assert letter["payload"] == b"sentinel"


def test_oversized_event_in_a_batch_is_dead_lettered(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    small = {"type": "track", "event": "Small", "anonymousId": "a", "messageId": "ok-1"}
    large = {
        "type": "track",
        "event": "Large",
        "anonymousId": "a",
        "messageId": "big-1",
        "properties": {"p": "x" * 3000},
    }
    response = post(f"{collector.url}/v1/batch", {"batch": [large, small]}, auth=AUTH)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["errors"][0] | {"message": None} == {
        "index": 0,
        "messageId": "big-1",
        "code": "event_too_large",
        "message": None,
    }
    (letter,) = dead_letters(kafka_settings, 1)
    assert (letter["reason"], letter["message_id"]) == ("event_too_large", "big-1")
    assert json.loads(letter["payload"]) == large
    (record,) = raw_events(kafka_settings, 1)
    assert record["message_id"] == "ok-1"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"event": "X", "messageId": "m1"}, "missing_id"),
        (
            {"event": "X", "anonymousId": "a", "messageId": "m1", "timestamp": "23/11/2026 10:00"},
            "invalid_timestamp",
        ),
    ],
)
def test_invalid_single_event_gets_400_and_a_dead_letter(
    collector: ThreadedCollector, kafka_settings: KafkaSettings, event: dict[str, Any], reason: str
) -> None:
    response = post(f"{collector.url}/v1/track", event, auth=AUTH)
    assert response.status_code == 400
    assert response.json()["code"] == reason
    assert response.json()["errors"][0]["messageId"] == "m1"
    (letter,) = dead_letters(kafka_settings, 1)
    assert (letter["stage"], letter["reason"], letter["message_id"]) == ("collector", reason, "m1")
    assert json.loads(letter["payload"]) == event
    assert letter["headers"]["index"] == "0"


def test_wrong_content_type_gets_415_and_a_dead_letter(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    body = b"event=Order+Completed&anonymousId=a"
    response = post(
        f"{collector.url}/v1/track",
        body,
        auth=AUTH,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
    (letter,) = dead_letters(kafka_settings, 1)
    assert (letter["reason"], letter["payload"]) == ("unsupported_media_type", body)
    assert letter["headers"]["content_type"] == "application/x-www-form-urlencoded"


def test_unknown_write_key_gets_401_and_no_dead_letter(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    event = {"type": "track", "event": "X", "anonymousId": "a"}
    for kwargs in ({"auth": ("guessed-key", "")}, {}, {"headers": {"Authorization": "Bearer abc"}}):
        response = post(f"{collector.url}/v1/batch", {"batch": [event]}, **kwargs)
        assert response.status_code == 401
        assert response.json()["code"] in ("unknown_write_key", "missing_write_key", "invalid_authorization")
    post(f"{collector.url}/v1/batch", b"sentinel", auth=AUTH)
    (letter,) = dead_letters(kafka_settings, 1)
    assert letter["payload"] == b"sentinel"
    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert 'webhouse_collector_requests_rejected_total{reason="unknown_write_key"} 1.0' in metrics


def test_mixed_batch_valid_events_go_through(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    batch = [
        {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "a1",
            "messageId": "v1",
            "properties": {"product_id": "p1", "price": 3},
        },
        {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "a1",
            "messageId": "bad",
            "properties": {"price": "three"},
        },
        {"type": "identify", "userId": "u1", "messageId": "v2", "traits": {"email": "u1@example.com"}},
        "not an event",
    ]
    body = gzip.compress(json.dumps({"batch": batch, "sentAt": "2026-11-23T09:00:00Z"}).encode())
    response = post(f"{collector.url}/v1/batch", body, auth=AUTH, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    answer = response.json()
    assert (answer["success"], answer["accepted"], answer["rejected"]) == (True, 2, 2)
    assert [(e["index"], e["code"]) for e in answer["errors"]] == [(1, "invalid_field"), (3, "invalid_event")]
    assert "properties.price" in answer["errors"][0]["message"]
    records = {r["message_id"]: r for r in raw_events(kafka_settings, 2)}
    assert set(records) == {"v1", "v2"}
    assert records["v1"]["sent_at"] == datetime(2026, 11, 23, 9, tzinfo=UTC)
    letters = dead_letters(kafka_settings, 2)
    assert [(d["reason"], d["message_id"]) for d in letters] == [
        ("invalid_field", "bad"),
        ("invalid_event", None),
    ]
    assert json.loads(letters[1]["payload"]) == "not an event"
    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert 'webhouse_collector_events_rejected_total{reason="invalid_field"} 1.0' in metrics


def test_health_and_readiness(collector: ThreadedCollector) -> None:
    assert requests.get(f"{collector.url}/health", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{collector.url}/health/ready", timeout=10).json() == {"status": "ready"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_kafka_unreachable_gives_503_with_retry_after() -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{_closed_port()}", topic_prefix="nowhere")
    settings = collector_settings(kafka, produce_timeout_s=1.0, retry_after_s=7, health_timeout_s=0.5)
    with ThreadedCollector(settings) as collector:
        event = {"type": "track", "event": "X", "anonymousId": "a"}
        # The bound is the client's timeout, ten times produce_timeout_s: a hang fails the test.
        response = post(f"{collector.url}/v1/track", event, auth=AUTH, timeout=10)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["code"] == "kafka_unavailable"
        ready = requests.get(f"{collector.url}/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
