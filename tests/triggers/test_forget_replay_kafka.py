"""Forget means forgotten, end to end: the real worker (`webhouse worker` with the trigger agents, a
child process) on the real broker builds a customer's profile, identity links and an open cart;
the customer is forgotten (`pipeline.kafka_forget`: tombstones and the erasure record) while the
worker runs; then the customer comes back on a new device and the old raw events are replayed.
Nothing of the old profile comes back: the latest profile is the new one alone, no identity link,
device or trigger state of the old life is left on any compacted topic or changelog, the old cart
fires no alert, and no topic downstream of the raw one holds the customer's clear e-mail.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from pipeline.kafka_forget import record_erasure, tombstone_customer
from pipeline.pii import PiiHasher
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, WebhouseSettings
from pipeline.topics import Topics
from processors.worker.runner import group_id, start_worker_process
from triggers.stages import consumer_groups

from .builders import T0
from .test_triggers_kafka import raw, settings_for, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
EVENTS = SingleObjectSerde("customer_event")
PROFILES = SingleObjectSerde("profile")
ALERTS = SingleObjectSerde("alert")
EMAIL = "ada.lovelace@example.com"
ADA = PiiHasher(WebhouseSettings().pii_hmac_secret).hash("email", EMAIL) or ""
OLD, NEW = "dev-ada-old", "dev-ada-new"


def old_life() -> list[dict[str, Any]]:
    """A visit with sign-in, consent and an order; an hour later a cart left behind (window open)."""
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    products = lambda p: {"products": [{"product_id": p, "category": "books"}]}  # noqa: E731
    return [
        raw("old-1", OLD, at(0), "Signed In", user_id=ADA),
        raw("old-2", OLD, at(5), "Consent Granted", consent={"purposes": ["marketing_email"]}),
        raw("old-3", OLD, at(20), "Order Completed",
            commerce={"order_id": "o-old", "revenue": 99.0, **products("p-bought")}),
        raw("old-4", OLD, at(3600), "Product Added", commerce={"cart_id": "c-old", **products("p-cart")}),
    ]  # fmt: skip


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for e in events:
        producer.produce(topic, EVENTS.encode(e), key=e["anonymous_id"].encode(), partition=0)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topics: list[str]) -> dict[str, list[tuple[bytes | None, bytes | None]]]:
    """Every message of these topics, in order, as (key, value); waits for each partition's end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})  # fmt: skip
    existing = consumer.list_topics(timeout=10).topics
    wanted = [t for t in topics if t in existing]
    ends = {(t, p) for t in wanted for p in existing[t].partitions}
    out: dict[str, list[tuple[bytes | None, bytes | None]]] = {t: [] for t in topics}
    if wanted:
        consumer.subscribe(wanted)
    deadline = time.monotonic() + 30
    try:
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if (error := msg.error()) is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ends.discard((msg.topic(), msg.partition()))
                continue
            out[msg.topic() or ""].append((msg.key(), msg.value()))
    finally:
        consumer.close()
    assert not ends, f"partitions not read to the end: {ends}"
    return out


def latest(messages: list[tuple[bytes | None, bytes | None]]) -> dict[bytes, bytes | None]:
    values: dict[bytes, bytes | None] = {}
    for key, value in messages:
        values[key or b""] = value
    return values


def tombstones(messages: list[tuple[bytes | None, bytes | None]], key: bytes) -> int:
    return sum(1 for k, v in messages if k == key and v is None)


def wait_for(check: Any, worker: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_forget_then_new_event_and_replay_bring_nothing_of_the_old_profile_back(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topics = Topics.from_settings(kafka_settings)
    settings = settings_for(kafka_settings, tmp_path)
    evaluate_group = next(g for g in consumer_groups(settings) if g.endswith("-triggers-evaluate"))
    devices_log = Topics.changelog(group_id(settings), "devices")
    states_log = Topics.changelog(evaluate_group, "trigger-states")
    produce(bootstrap, topics.raw_events, old_life())
    worker = start_worker_process(settings, tmp_path / "worker.log")
    try:

        def old_profile() -> bool:
            profiles = latest(read_all(bootstrap, [topics.profiles])[topics.profiles])
            value = profiles.get(ADA.encode())
            return value is not None and PROFILES.decode(value)["orders"] == 1

        wait_for(old_profile, worker, 120, "the old profile")

        devices = tombstone_customer(bootstrap, topics, ADA)[1]
        assert devices == [OLD]
        erasure = record_erasure(bootstrap, topics, ADA, devices)

        def erasure_applied() -> bool:  # each stage tombstones what it dropped, after forget did
            logs = read_all(bootstrap, [devices_log, topics.profiles])
            return (
                tombstones(logs[devices_log], OLD.encode()) >= 2
                and tombstones(logs[topics.profiles], ADA.encode()) >= 2
            )

        wait_for(erasure_applied, worker, 60, "the stages to apply the erasure")
        before = alerts_of(bootstrap, topics.alerts)  # those of the old life stay until retention

        back = max(datetime.now(UTC), erasure.erased_at) + timedelta(seconds=1)
        later = lambda s: back + timedelta(seconds=s)  # noqa: E731
        new_life = [
            raw("new-1", NEW, back, "Signed In", user_id=ADA, sent_at=back, received_at=back),
            raw("new-2", NEW, later(10), received_at=later(10), sent_at=later(10)),
        ]
        produce(bootstrap, topics.raw_events, new_life)
        produce(bootstrap, topics.raw_events, old_life())  # the replay, after the new events
        clock = raw("clock", "dev-zed", later(4 * 3600), received_at=later(4 * 3600), sent_at=later(4 * 3600))
        produce(bootstrap, topics.raw_events, [clock])  # closes every visit and window

        def new_profile() -> dict[str, Any] | None:
            profiles = latest(read_all(bootstrap, [topics.profiles])[topics.profiles])
            value = profiles.get(ADA.encode())
            profile = PROFILES.decode(value) if value is not None else None
            return profile if profile is not None and profile["sessions"] >= 1 else None

        profile = wait_for(new_profile, worker, 120, "the new profile with its visit")
        time.sleep(5)  # whatever the replay could still bring
        assert worker.poll() is None
    finally:
        stop(worker)

    profile = new_profile()
    assert profile is not None
    assert (profile["orders"], profile["lifetime_revenue"], profile["products_bought"]) == (0, 0.0, [])
    assert (profile["consent"], profile["anonymous_ids"], profile["sessions"]) == ({}, [NEW], 1)
    assert profile["first_seen"] >= erasure.erased_at

    _check_no_trace_of_the_old_life(bootstrap, topics, (devices_log, states_log), before)


def _check_no_trace_of_the_old_life(bootstrap: str, topics: Topics, changelogs: tuple[str, str],
                                    alerts_before: list[tuple[str, str]]) -> None:  # fmt: skip
    """Every topic after the raw one, compacted to its latest records: the old device's link, state
    and trigger state gone, the customer's trigger state fresh, no alert since the forget, and the
    clear address nowhere."""
    devices_log, states_log = changelogs
    downstream = [t for t in _all_topics(bootstrap, topics.prefix) if t != topics.raw_events]
    logs = read_all(bootstrap, downstream)
    identity = latest(logs[topics.identity])
    assert {k: v for k, v in identity.items() if OLD.encode() in k and v is not None} == {}
    assert identity.get(json.dumps([NEW, ADA]).encode()) is not None
    assert latest(logs[devices_log]).get(OLD.encode()) is None
    states = latest(logs[states_log])
    assert states.get(OLD.encode()) is None
    state = json.loads(states[ADA.encode()] or b"{}")
    assert state["profile"]["orders"] == 0 and state["history"] == [] and state["consents"] == []
    assert not {"o-old", "p-bought", "p-cart", OLD} & set(json.dumps(state).split('"'))
    # Nothing after the forget: the old cart never fires.
    assert alerts_of(bootstrap, topics.alerts) == alerts_before
    clear = {t: n for t, msgs in logs.items() if (n := sum(EMAIL.encode() in (k or b"") + (v or b"")
                                                          for k, v in msgs))}  # fmt: skip
    assert clear == {}


def alerts_of(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    alerts = [ALERTS.decode(v) for _, v in read_all(bootstrap, [topic])[topic] if v is not None]
    return [(a["rule_id"], a["alert_id"]) for a in alerts if a["customer_id"] == ADA]


def _all_topics(bootstrap: str, prefix: str) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"list-{uuid.uuid4().hex[:8]}"})
    try:
        return sorted(t for t in consumer.list_topics(timeout=10).topics if t.startswith(prefix))
    finally:
        consumer.close()
