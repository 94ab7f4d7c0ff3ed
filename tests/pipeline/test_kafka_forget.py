"""`webhouse forget` on Kafka: the customer's keys tombstoned on every compacted topic (the
project's and the workers' changelogs), nobody else's, and an erasure record written."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from pipeline.errors import SerdeError
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_forget import read_erasures, record_erasure, tombstone_customer
from pipeline.pii import PiiHasher
from pipeline.settings import WebhouseSettings
from pipeline.topics import Topics, TopicSpec
from tools.cli import main

pytestmark = pytest.mark.kafka


def latest(bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    """The latest value per key of a whole topic (None: tombstoned)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    values: dict[bytes, bytes | None] = {}
    at_end: set[int] = set()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if (error := msg.error()) is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                    if consumer.assignment() and at_end >= {p.partition for p in consumer.assignment()}:
                        break
                continue
            at_end.discard(msg.partition() or 0)
            values[msg.key() or b""] = msg.value()
    finally:
        consumer.close()
    return values


def test_the_customers_keys_are_tombstoned_and_nobody_elses(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}", partitions=2)
    changelog = f"{topics.prefix}-webhouse-worker-devices-changelog"
    ensure_topics(kafka_bootstrap, [*topics.specs(), TopicSpec(changelog, 2, {"cleanup.policy": "compact"})])
    customer = PiiHasher(WebhouseSettings().pii_hmac_secret).hash("email", "kate@example.com")
    assert customer is not None
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    writes = {
        topics.identity: [(json.dumps(["a-1", customer]), "link"), (json.dumps(["a-10", "other"]), "link")],
        topics.profiles: [(customer, "profile"), ("other", "profile")],
        changelog: [("a-1", "device"), ("a-10", "device"), ("a-100", "device")],
    }
    for topic, pairs in writes.items():
        for key, value in pairs:
            producer.produce(topic, value.encode(), key.encode())
    assert producer.flush(10) == 0

    tombstoned, devices = tombstone_customer(kafka_bootstrap, topics, customer)
    assert devices == ["a-1"]
    counts = {t.topic: t.keys for t in tombstoned}
    assert counts[topics.identity] == 1 and counts[topics.profiles] == 1 and counts[changelog] == 1
    assert latest(kafka_bootstrap, topics.identity) == {
        json.dumps(["a-1", customer]).encode(): None,
        json.dumps(["a-10", "other"]).encode(): b"link",
    }
    assert latest(kafka_bootstrap, topics.profiles) == {customer.encode(): None, b"other": b"profile"}
    assert latest(kafka_bootstrap, changelog) == {b"a-1": None, b"a-10": b"device", b"a-100": b"device"}


def test_forget_command_takes_an_email_as_its_pseudonym(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}", partitions=2)
    ensure_topics(kafka_bootstrap, topics.specs())
    monkeypatch.setenv("WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("WEBHOUSE_KAFKA__TOPIC_PREFIX", topics.prefix)
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path / "tables"))
    assert main(["forget", " Kate@Example.com"]) == 0
    pseudonym = PiiHasher(WebhouseSettings().pii_hmac_secret).hash("email", "kate@example.com")
    assert f"customer {pseudonym}:" in capsys.readouterr().out
    erasures = latest(kafka_bootstrap, topics.erasures)
    record = json.loads(erasures[str(pseudonym).encode()] or b"")
    assert (record["customer_id"], record["anonymous_ids"]) == (pseudonym, [])


def test_every_erasure_reads_back_for_a_stage_starting_up(kafka_bootstrap: str) -> None:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}", partitions=2)
    ensure_topics(kafka_bootstrap, topics.specs())
    assert read_erasures(kafka_bootstrap, topics) == []
    first = record_erasure(kafka_bootstrap, topics, "ada", ["dev-b", "dev-a"])
    second = record_erasure(kafka_bootstrap, topics, "bob", [])
    assert read_erasures(kafka_bootstrap, topics) == [first, second]
    assert first.anonymous_ids == ("dev-a", "dev-b")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.erasures, b"not json", key=b"x")
    assert producer.flush(10) == 0
    with pytest.raises(SerdeError, match=rf"{topics.erasures}/0@2: not an erasure record"):
        read_erasures(kafka_bootstrap, topics)
