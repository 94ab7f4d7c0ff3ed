"""SIGKILL the worker process running the trigger stages, repeatedly: no alert lost, none repeated,
every customer's latest profile as in an undisturbed run.

Outputs, state and offsets of each batch are one Kafka transaction (``pipeline.runtime.kafka``),
so the killed run must equal the undisturbed one exactly. Nothing downstream deduplicates here:
the alerts and profiles are read as committed on the topics, every record counted.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipeline.runtime.control import send_end_of_input
from pipeline.runtime.progress import unprocessed
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, Settings, TriggerSettings
from pipeline.topics import Topics
from processors.worker.runner import group_id, start_worker_process
from tests.processors.worker_support import worker_settings
from triggers.stages import consumer_groups

from .builders import RULES_DIR, T0
from .test_triggers_kafka import EVENTS, cart, raw, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ALERTS = SingleObjectSerde("alert")
PROFILES = SingleObjectSerde("profile")
CUSTOMERS = 40


def traffic() -> list[dict[str, Any]]:
    """Carts of ``CUSTOMERS`` customers an hour apart in bursts: some withdraw consent, some order."""
    events: list[dict[str, Any]] = []
    for i in range(CUSTOMERS):
        start = T0 + timedelta(minutes=7 * i)
        events += cart(f"dev-{i}", f"cust-{i}", start, f"c{i}", withdraw=i % 5 == 0)
        if i % 3 == 0:  # orders within the hour: no abandonment alert
            events.append(order(f"c{i}-order", i, start + timedelta(minutes=20)))
        if i % 6 == 0:  # and a client's retry of that order (a new message id): counts once
            events.append(order(f"c{i}-order-retry", i, start + timedelta(minutes=21)))
    return sorted(events, key=lambda e: e["received_at"])


def order(message_id: str, i: int, at: Any) -> dict[str, Any]:
    products = [{"product_id": f"c{i}-p", "category": "books"}]
    commerce = {"order_id": f"o-{i}", "revenue": 30.0, "products": products}
    return raw(message_id, f"dev-{i}", at, "Order Completed", commerce=commerce)


def settings_for(kafka: KafkaSettings, tmp: Path) -> Settings:
    base = worker_settings(kafka, tmp, batch=20)  # small batches: kills land mid-stream
    # A stable instance id, as a supervisor restarting the same slot has: a restart aborts at once
    # what the killed process left open.
    worker = base.worker.model_copy(update={"extensions": ["triggers.stages"], "instance_id": "slot-0"})
    triggers = TriggerSettings(rules_dir=RULES_DIR, sweep_interval_s=0.5)
    return base.model_copy(update={"worker": worker, "triggers": triggers})


def produce(bootstrap: str, topics: Topics, events: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for e in events:
        partition = int(e["anonymous_id"].split("-")[1]) % topics.partitions
        producer.produce(
            topics.raw_events, EVENTS.encode(e), key=e["anonymous_id"].encode(), partition=partition
        )
    assert producer.flush(30) == 0
    send_end_of_input(bootstrap, topics.raw_events)


def done(settings: Settings) -> bool:
    bootstrap = settings.kafka.bootstrap_servers
    topics = Topics.from_settings(settings.kafka)
    groups = {group_id(settings): [topics.raw_events], **consumer_groups(settings)}
    return all(unprocessed(bootstrap, g, inputs) == 0 for g, inputs in groups.items())


def run(settings: Settings, log: Path, kills: list[float]) -> None:
    """Start the worker; SIGKILL it after each of ``kills`` seconds and start it again; then to the end."""
    for delay in kills:
        worker = start_worker_process(settings, log)
        time.sleep(delay)
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        worker.kill()
        worker.wait(10)
    worker = start_worker_process(settings, log)
    try:
        deadline = time.monotonic() + 240
        settled = 0
        while settled < 3:  # three looks in a row with nothing left anywhere
            assert time.monotonic() < deadline, "the stages did not finish"
            assert worker.poll() is None, f"the worker exited with {worker.returncode}"
            settled = settled + 1 if done(settings) else 0
            time.sleep(1.0)
    finally:
        stop(worker)


def committed_records(bootstrap: str, topic: str, serde: SingleObjectSerde) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.partition.eof": True})  # fmt: skip
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        open_parts, records = set(parts), []
        while open_parts:
            for m in consumer.consume(500, 5.0):
                error = m.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    open_parts.discard(m.partition())
                elif error is None:
                    records.append(serde.decode(m.value() or b""))
        return records
    finally:
        consumer.close()


def outcome(settings: Settings) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, Any]]]:
    bootstrap = settings.kafka.bootstrap_servers
    topics = Topics.from_settings(settings.kafka)
    alerts = committed_records(bootstrap, topics.alerts, ALERTS)
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was produced twice"
    profiles = committed_records(bootstrap, topics.profiles, PROFILES)
    numbers = [(p["customer_id"], p["version"]) for p in profiles]
    assert len(numbers) == len(set(numbers)), "a profile version was produced twice"
    # The final profile must be the same; its number counts the versions written on the way, and
    # which minor changes were written apart follows how batches fell (issue 14, still open).
    latest = {p["customer_id"]: {k: v for k, v in p.items() if k != "version"} for p in profiles}
    keys = ("alert_id", "customer_id", "rule_id", "status", "suppression_reason")
    return sorted(tuple(a[k] for k in keys) for a in alerts), latest


def test_sigkills_of_the_trigger_stages_lose_and_repeat_nothing(
    kafka_settings: KafkaSettings, tmp_path: Path, topics_factory: Any
) -> None:
    events = traffic()
    clean_topics = topics_factory(partitions=2)
    clean = settings_for(
        kafka_settings.model_copy(update={"topic_prefix": clean_topics.prefix}), tmp_path / "a"
    )
    produce(kafka_settings.bootstrap_servers, clean_topics, events)
    run(clean, tmp_path / "clean.log", kills=[])
    baseline_alerts, baseline_profiles = outcome(clean)

    killed_topics = topics_factory(partitions=2)
    killed = settings_for(
        kafka_settings.model_copy(update={"topic_prefix": killed_topics.prefix}), tmp_path / "b"
    )
    produce(kafka_settings.bootstrap_servers, killed_topics, events)
    rng = random.Random(11)
    run(killed, tmp_path / "killed.log", kills=[rng.uniform(4.0, 9.0) for _ in range(4)])
    killed_alerts, killed_profiles = outcome(killed)

    carts = [a for a in baseline_alerts if a[2] == "cart_abandonment"]
    withdrawn = {f"cust-{i}" for i in range(CUSTOMERS) if i % 5 == 0}
    ordered = {f"cust-{i}" for i in range(CUSTOMERS) if i % 3 == 0}
    assert {a[1] for a in carts if a[3] == "fired"} == {
        f"cust-{i}" for i in range(CUSTOMERS)
    } - withdrawn - ordered
    assert {a[1] for a in carts if a[3] == "suppressed"} == withdrawn - ordered
    assert killed_alerts == baseline_alerts
    differing = {
        (c, k, str(baseline_profiles[c][k]), str(p.get(k)))
        for c, p in killed_profiles.items()
        for k in baseline_profiles.get(c, {})
        if p.get(k) != baseline_profiles[c][k]
    }
    assert killed_profiles == baseline_profiles, sorted(differing)[:10]
    assert all(baseline_profiles[f"cust-{i}"]["orders"] == (1 if i % 3 == 0 else 0) for i in range(CUSTOMERS))
