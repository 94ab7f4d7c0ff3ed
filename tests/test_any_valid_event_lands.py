"""Any event the collector accepts goes the whole way: nothing after the collector refuses it.

Hypothesis draws Segment events of every call type, with untyped properties and traits of any
JSON (members named anything, e-mail addresses and phone numbers among the values) and a
context of the kinds clients send. Each the collector's mapping and pseudonymiser accept is
encoded as the collector writes it and goes through the worker, route and evaluate stages as
they run on a broker (``pipeline.runtime.memory``), then through the sink's tables of the
enriched events. Nothing may be dead-lettered on the way, the enriched topic holds each event
once, and every table the enriched events feed builds its rows of them. (A valid event with a
nested member named "extra" was refused by the pseudonymiser until 6 December 2026.)
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.collector.request import ParsedRequest
from pipeline.collector.semantic import SEMANTIC
from pipeline.collector.server import CollectorServer
from pipeline.errors import ValidationError
from pipeline.pii import PiiHasher
from pipeline.runtime.control import is_control
from pipeline.runtime.memory import MemoryBroker, MemoryPipeline, MemoryRunner
from pipeline.runtime.stage import Record
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, Settings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage
from sinks.tables import Table, default_specs
from tests.pipeline.collector.test_segment_fuzz import untyped_members
from triggers.metrics import TriggerMetrics
from triggers.stages import EvaluateStage, RouteStage

SERDE = SingleObjectSerde("customer_event")
INGESTOR = CollectorServer(Settings(), CollectorRegistry()).ingestor  # mapping only: nothing is sent
T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "curl/8.5.0",
    "",
]
EVENT_NAMES = sorted(SEMANTIC)  # commerce, e-mail, app, consent, identity, unsubscribe

contexts = st.fixed_dictionaries(
    {},
    optional={
        "userAgent": st.sampled_from(AGENTS),
        "ip": st.sampled_from(["203.0.113.9", "2001:db8::1", "not an address"]),
        "page": st.fixed_dictionaries(
            {"url": st.sampled_from(["https://shop.example/p/1?utm_source=mail&email=a@b.co", "/x"])},
            optional={"referrer": st.sampled_from(["https://www.google.com/", ""]), "path": st.just("/p/1")},
        ),
        "campaign": st.fixed_dictionaries({"name": st.text(max_size=6), "source": st.just("mail")}),
        "library": st.fixed_dictionaries({"name": st.sampled_from(["analytics.js", "analytics-ios"])}),
        "locale": st.just("en-GB"),
    },
)


products = st.lists(
    st.fixed_dictionaries(
        {"product_id": st.sampled_from(["p-1", "p-2"])},
        optional={
            "price": st.floats(-1e6, 1e6),
            "quantity": st.integers(-3, 10**6),
            "category": st.text(max_size=6),
            "name": st.text(max_size=6),
        },
    ),
    max_size=3,
)
typed_properties = st.fixed_dictionaries(
    {},
    optional={
        "products": products,
        "product_id": st.sampled_from(["p-1", "p-3"]),
        "revenue": st.floats(-1e9, 1e9),
        "order_id": st.text(min_size=1, max_size=6),
        "currency": st.sampled_from(["EUR", "usd", "X"]),
        "purposes": st.lists(st.sampled_from(["marketing_email", "analytics"]), max_size=2),
        "step": st.integers(-(2**31), 2**31 - 1),
        "campaign_id": st.text(max_size=6),
        "email_id": st.text(max_size=6),
        "link_url": st.sampled_from(["https://shop.example/?email=a@b.co", "mailto:x", ""]),
        "bounce_type": st.sampled_from(["hard", "soft", ""]),
        "from_background": st.booleans(),
        "version": st.text(max_size=4),
    },
)


@st.composite
def segment_event(draw: st.DrawFn, index: int) -> dict[str, Any]:
    call = draw(st.sampled_from(["track", "track", "page", "screen", "identify", "group", "alias"]))
    device, customer = draw(st.integers(0, 2)), draw(st.none() | st.integers(0, 2))
    raw: dict[str, Any] = {
        "type": call,
        "messageId": f"m-{index}",
        "anonymousId": f"dev-{device}",
        "context": draw(contexts),
        "properties": draw(untyped_members),
    }
    offset = draw(st.none() | st.integers(-300, 0))
    if offset is not None:
        raw["timestamp"] = (T0 + timedelta(minutes=offset)).isoformat()
    sent = draw(st.none() | st.integers(-300, 300))  # a client clock off either way
    if sent is not None:
        raw["sentAt"] = (T0 + timedelta(minutes=sent)).isoformat()
    raw["properties"].update(draw(typed_properties))
    if customer is not None or call == "alias":
        raw["userId"] = f"c-{customer or 0}"
    if call == "track":
        raw["event"] = draw(st.sampled_from(EVENT_NAMES) | st.text(min_size=1, max_size=8).filter(str.strip))
    if call == "identify":
        raw["traits"] = draw(untyped_members)
    if call == "group":
        raw["groupId"] = "g-1"
    if call == "alias":
        raw["previousId"] = f"dev-{device}"
    return raw


def accepted(raws: list[dict[str, Any]], imported: bool) -> list[dict[str, Any]]:
    """The records the collector writes of ``raws``: its own checks, mapping and pseudonymiser
    (``imported``: as the history import endpoint takes them)."""
    parsed = ParsedRequest("s", raws, None, b"", imported=imported)
    records = []
    for raw in raws:
        try:
            records.append(INGESTOR.map_one(parsed, raw, T0)[0])
        except ValidationError:
            continue
    return records


def stream(records: list[dict[str, Any]], seed: int) -> tuple[MemoryBroker, Topics]:
    """The records through the worker, route and evaluate stages, in an order drawn from ``seed``."""
    kafka = KafkaSettings(topic_prefix="t", default_partitions=2)
    configured = Settings(kafka=kafka, worker=WorkerSettings(extensions=[]))
    topics = Topics.from_settings(kafka)
    broker = MemoryBroker(2)
    for record in records:
        key = (record["anonymous_id"] or record["user_id"]).encode()
        broker.append(Record(topics.raw_events, key, SERDE.encode(record, topics.raw_events)))
    registry = CollectorRegistry()
    worker, trigger = WorkerMetrics(registry), TriggerMetrics(registry)
    runners = [
        MemoryRunner(lambda: WorkerStage(configured, worker), broker, "w"),
        MemoryRunner(lambda: RouteStage(configured, trigger), broker, "r"),
        MemoryRunner(lambda: EvaluateStage(configured, trigger), broker, "e"),
    ]
    MemoryPipeline(broker, runners, random.Random(seed), max_batch=5).run()
    return broker, topics


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 8).flatmap(
    lambda n: st.tuples(st.tuples(*(segment_event(i) for i in range(n))), st.booleans(), st.integers(0, 99))
))  # fmt: skip
def test_every_accepted_event_is_enriched_once_and_lands_without_a_dead_letter(
    drawn: tuple[tuple[dict[str, Any], ...], bool, int],
) -> None:
    raws, imported, seed = drawn
    records = accepted(list(raws), imported)
    broker, topics = stream(records, seed)

    assert [letter.value for letter in broker.records(topics.dead_letters)] == []
    written = broker.records(topics.enriched_events)
    enriched = [SERDE.decode(m.value) for m in written if not is_control(m.headers)]  # not progress
    assert Counter(e["message_id"] for e in enriched) == Counter(r["message_id"] for r in records)

    hasher = PiiHasher("sink-secret")
    for spec in default_specs():
        if spec.source != "enriched_events":
            continue
        table = Table(spec, hasher)
        derived = [table.derive(e) for e in enriched]
        built = table.batch(enriched, derived)
        assert built.num_rows == sum(len(rows) for rows in derived)
        if spec.name == "events":
            assert built.num_rows == len(enriched)
