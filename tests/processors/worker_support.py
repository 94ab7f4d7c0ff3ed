"""Helpers for the worker's broker tests: settings, simulated raw events, reading outputs back."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.runtime.control import Progress, is_control
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, MetricsSettings, SessionPolicySettings, Settings, WorkerSettings
from pipeline.topics import Topics

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SERDES = {
    "enriched": SingleObjectSerde("customer_event"),
    "sessions": SingleObjectSerde("session"),
    "identity": SingleObjectSerde("identity_link"),
    "dead": SingleObjectSerde("dead_letter"),
}


def worker_settings(
    kafka: KafkaSettings, tmp: Path, batch: int = 500, device_cache: int = 50_000, **session: Any
) -> Settings:
    policy = {"inactivity_gap_s": 60, "allowed_lateness_s": 5, "idle_close_interval_s": 1.0, **session}
    return Settings(
        kafka=kafka,
        worker=WorkerSettings(
            app_id=f"w{uuid.uuid4().hex[:6]}",
            data_dir=tmp / "worker",
            session=SessionPolicySettings(**policy),
            batch_max_events=batch,
            device_cache=device_cache,
            group_session_timeout_s=6,  # a SIGKILLed worker's partitions come back quickly
            idle_after_s=1.0,  # partitions without traffic hold no trigger clock back for long
            extensions=[],  # the worker alone; triggers test their own agents
        ),
        metrics=MetricsSettings(port=0),
    )


def raw_event(mid: str, anon: str | None, at: datetime, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": mid,
        "type": "page",
        "channel": "web",
        "anonymous_id": anon,
        "timestamp": at,
        "sent_at": at,
        "received_at": at,
        "context": {"page": {"url": f"https://shop.example/{mid}", "referrer": None}, "user_agent": CHROME},
    }
    record.update(fields)
    return record


def simulated(devices: int, per_device: int, seed: int = 7) -> list[tuple[int, dict[str, Any]]]:
    """(partition, event) in arrival order; devices pinned to partitions; in order per device."""
    rng = random.Random(seed)
    out: list[tuple[int, dict[str, Any]]] = []
    clocks = {f"dev-{d}": T0 + timedelta(seconds=rng.randint(0, 600)) for d in range(devices)}
    for i in range(devices * per_device):
        device = f"dev-{rng.randrange(devices)}"
        gap = rng.choice([5, 10, 20, 30, 200])  # 200 s > the 60 s gap: a new visit
        clocks[device] += timedelta(seconds=gap)
        extra: dict[str, Any] = {}
        if i % 97 == 0:
            extra = {"type": "track", "event": "Signed In", "user_id": f"cust-{device}"}
        out.append((int(device.split("-")[1]) % 2, raw_event(f"e{i}", device, clocks[device], **extra)))
    out.sort(key=lambda pe: pe[1]["received_at"])  # the collector receives in time order
    return out


def produce(
    bootstrap: str,
    topic: str,
    events: list[tuple[int, dict[str, Any]]],
    extra: Sequence[tuple[int, bytes]] = (),
) -> None:
    serde = SERDES["enriched"]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for partition, event in events:
        key = (event.get("anonymous_id") or event.get("user_id") or "").encode()
        producer.produce(topic, serde.encode(event), key=key, partition=partition)
    for partition, value in extra:
        producer.produce(topic, value, key=b"junk", partition=partition)
    assert producer.flush(30) == 0


class Outputs:
    """Reads the worker's output topics from the start, decoding as it goes."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.names = {
            topics.enriched_events: "enriched",
            topics.sessions: "sessions",
            topics.identity: "identity",
            topics.dead_letters: "dead",
        }
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"check-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",  # as every consumer downstream of a stage
            }
        )
        self.consumer.subscribe(list(self.names))
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in self.names.values()}
        self.partitions: dict[str, set[tuple[str, int]]] = {}
        self.progress: list[tuple[int, Progress]] = []  # the worker's watermark records, in order

    def poll(self, seconds: float = 0.5) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(500, timeout=0.2):
                if msg.error():
                    continue
                # A record (not an error): it has a topic, a partition and, here, a value.
                kind = self.names[cast(str, msg.topic())]
                if is_control(msg.headers()):  # the worker reports on its enriched and sessions partitions
                    if kind == "enriched":
                        self.progress.append(
                            (cast(int, msg.partition()), Progress.from_bytes(msg.value() or b""))
                        )
                    continue
                record = SERDES[kind].decode(cast(bytes, msg.value()))
                record["_partition"] = msg.partition()
                self.records[kind].append(record)

    def wait_until(self, done: Callable[[Outputs], object], timeout: float, settle: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if done(self):
                if settle:
                    self.poll(settle)
                return
        raise AssertionError(f"timed out; have { {k: len(v) for k, v in self.records.items()} }")

    def enriched_ids(self) -> set[str]:
        return {r["message_id"] for r in self.records["enriched"]}

    def close(self) -> None:
        self.consumer.close()


def message_count(bootstrap: str, topic: str, partitions: int = 2) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex[:8]}"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        )
    finally:
        consumer.close()
