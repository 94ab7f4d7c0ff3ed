"""Forgetting a customer on Kafka: tombstones on compacted topics, and an erasure record.

A compacted topic keeps the latest value per key for ever, so a forgotten customer's
identity links, profile and worker state would outlive every table. ``tombstone_customer``
reads each compacted topic of the deployment (the project's and the stream workers'
changelogs, found by prefix) and writes a tombstone (the key, no value) for every key that
*is* one of the customer's ids (its customer id or one of its devices' anonymous ids) or a
JSON array holding one (identity links are keyed ``[anonymous_id, customer_id]``): exact
matches only, so no other customer's key is touched. Compaction then drops the old values.

``record_erasure`` writes an ``Erasure`` (``pipeline.erasure``: customer id, devices, time) to
the compacted erasures topic, keyed by customer id: what the stream stages check replays and
late events against so that they do not bring the profile back (``WorkerCore.apply_erasure``,
``TriggerCore.apply_erasure``; docs/webhouse.md, "Forgetting a customer"). ``read_erasures``
gives a starting stage every erasure so far.

What stays: the append-only topics (raw, enriched, sessions, triggers input, alerts, dead
letters) keep the customer's events until their retention (``retention.ms``, 7 days by
default) deletes them; since the collector pseudonymises them, they hold pseudonyms, not
clear e-mail, phone or IP. The running stages drop their in-memory state for the customer
when they read the erasure record (once their runtimes consume the erasures topic).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from pipeline.erasure import Erasure
from pipeline.errors import ProduceError, SerdeError
from pipeline.immutable import immutable
from pipeline.topics import Topics


@immutable
class Tombstoned:
    topic: str
    keys: int


def compacted_topics(bootstrap: str, topics: Topics) -> list[str]:
    """The project's compacted topics plus every stage's changelog under the prefix (state stores)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"forget-{uuid.uuid4().hex[:8]}"})
    try:
        existing = consumer.list_topics(timeout=10).topics
    finally:
        consumer.close()
    ours = {s.name for s in topics.specs() if s.config.get("cleanup.policy") == "compact"}
    changelogs = {t for t in existing if t.startswith(topics.prefix) and t.endswith("-changelog")}
    return sorted((ours | changelogs) & set(existing) - {topics.erasures})


def is_customer_key(key: bytes | None, ids: frozenset[str]) -> bool:
    if not key:
        return False
    text = key.decode("utf-8", "replace")
    if text in ids:
        return True
    if text.startswith("["):
        try:
            parts = json.loads(text)
        except ValueError:
            return False
        return isinstance(parts, list) and any(isinstance(p, str) and p in ids for p in parts)
    return False


@retry(
    retry=retry_if_exception_type(KafkaException),
    wait=wait_fixed(0.5),
    stop=stop_after_delay(20),
    reraise=True,
)
def _offsets(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """Low and high offsets; retried while a just-created topic's partitions have no leader yet."""
    low, high = consumer.get_watermark_offsets(tp, timeout=10)
    return int(low), int(high)


def _at_end(msg: Message, ends: dict[int, int]) -> bool:
    """True for an error event; an end of partition also ends its read. Transactional topics (the
    stages' outputs and changelogs) end with a commit marker, not a record: the end event is how
    a reader knows it has everything (the consumer needs ``enable.partition.eof``)."""
    error = msg.error()
    if error is not None and error.code() == KafkaError._PARTITION_EOF:
        ends.pop(msg.partition() or 0, None)
    return error is not None


def _keys_to_tombstone(consumer: Consumer, topic: str, ids: frozenset[str]) -> set[tuple[int, bytes]]:
    return {
        (partition, key)
        for partition, _, key, _ in _read_to_end(consumer, topic)
        if key is not None and is_customer_key(key, ids)
    }


def tombstone_customer(
    bootstrap: str, topics: Topics, customer_id: str, anonymous_ids: Iterable[str] = ()
) -> tuple[list[Tombstoned], list[str]]:
    """Tombstone the customer's keys on every compacted topic: per topic the count, and the
    devices found linked to the customer on the identity topic (with ``anonymous_ids``)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"forget-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    done = []
    try:
        devices = set(anonymous_ids) | linked_devices(consumer, topics.identity, customer_id)
        ids = frozenset([customer_id, *devices])
        for topic in compacted_topics(bootstrap, topics):
            keys = _keys_to_tombstone(consumer, topic, ids)
            for partition, key in sorted(keys):
                producer.produce(topic, value=None, key=key, partition=partition)
            done.append(Tombstoned(topic, len(keys)))
        if producer.flush(30):
            raise ProduceError("tombstones not acknowledged within 30 s")
    finally:
        consumer.close()
    return done, sorted(devices)


def linked_devices(consumer: Consumer, identity_topic: str, customer_id: str) -> set[str]:
    """Anonymous ids the identity topic links to the customer (keys ``[anonymous_id, customer_id]``)."""
    keys = _keys_to_tombstone(consumer, identity_topic, frozenset([customer_id]))
    devices: set[str] = set()
    for _, key in keys:
        parts = json.loads(key)
        devices.update(p for p in parts if isinstance(p, str) and p != customer_id)
    return devices


def record_erasure(bootstrap: str, topics: Topics, customer_id: str, anonymous_ids: Iterable[str]) -> Erasure:
    """Write the erasure record; the stages read it (keyed by customer id: compaction keeps it)."""
    erasure = Erasure(customer_id, tuple(sorted(set(anonymous_ids))), datetime.now(UTC))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topics.erasures, erasure.to_bytes(), key=customer_id.encode())
    if producer.flush(30):
        raise ProduceError("the erasure record was not acknowledged within 30 s")
    return erasure


def read_erasures(bootstrap: str, topics: Topics) -> list[Erasure]:
    """Every erasure on the erasures topic, oldest first: what a stage applies at start, before any
    input (then it follows the topic for new ones). Read by assignment, not in a consumer group:
    every instance needs them all. A record that is not an erasure stops the read (SerdeError)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"erasures-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    erasures: list[Erasure] = []
    try:
        for partition, offset, _, value in _read_to_end(consumer, topics.erasures):
            try:
                erasures.append(Erasure.from_bytes(value))
            except SerdeError as exc:
                raise SerdeError(f"{topics.erasures}/{partition}@{offset}: {exc}") from exc
    finally:
        consumer.close()
    return erasures


def _read_to_end(consumer: Consumer, topic: str) -> Iterator[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of every message with a value, up to the ends seen at the start."""
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    ends: dict[int, int] = {}
    assignment = []
    for partition in metadata.partitions:
        low, high = _offsets(consumer, TopicPartition(topic, partition))
        if high > low:
            ends[partition] = high
            assignment.append(TopicPartition(topic, partition, low))
    if not assignment:
        return
    consumer.assign(assignment)
    deadline = time.monotonic() + 120
    while ends and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or _at_end(msg, ends):
            continue
        partition, offset, value = msg.partition() or 0, msg.offset() or 0, msg.value()
        if value is not None and offset < ends.get(partition, 0):
            yield partition, offset, msg.key(), value
        if offset >= ends.get(partition, 0) - 1:
            ends.pop(partition, None)
    consumer.unassign()
    if ends:
        raise ProduceError(f"{topic}: could not read to the end of partitions {sorted(ends)}")
