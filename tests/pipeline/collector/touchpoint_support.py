"""Helpers of the touchpoint tests: a collector on the test broker, and reading events back."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError

from pipeline.serde import SingleObjectSerde
from pipeline.settings import CollectorSettings, KafkaSettings, Settings

WRITE_KEY = "shop-write-key"


def collector_settings(kafka: KafkaSettings, **collector: Any) -> Settings:
    base: dict[str, Any] = {"port": 0, "write_keys": {WRITE_KEY: "shop"}, "produce_timeout_s": 10.0}
    base.update(collector)
    return Settings(kafka=kafka, collector=CollectorSettings(**base))


def read_records(
    bootstrap: str, topic: str, count: int, schema: str = "customer_event", timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Every record of ``topic``, read to the end of each partition once ``count`` arrived.

    Producers here wait for acks before the test reads, so "to the end" means exactly what
    was produced: a test can assert that something was *not* produced.
    """
    serde = SingleObjectSerde(schema)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    records: list[dict[str, Any]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                    partitions = consumer.assignment()
                    if len(records) >= count and partitions and at_end >= {p.partition for p in partitions}:
                        break
                continue
            at_end.discard(msg.partition() or 0)
            value = msg.value()
            assert value is not None
            records.append(serde.decode(value, topic))
    finally:
        consumer.close()
    assert len(records) >= count, f"expected {count} records on {topic}, got {len(records)}: {records}"
    return records
