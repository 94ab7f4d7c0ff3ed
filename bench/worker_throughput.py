"""Stream worker throughput: pre-load the raw topic with N simulated events, time the worker.

    .venv/bin/python bench/worker_throughput.py --events 100000
    .venv/bin/python bench/worker_throughput.py --events 1000000 --workers 2

Starts its own broker on free ports (or uses --bootstrap), writes N realistic web events
(page views, product views, cart adds, orders, sign-ins, a few bots; several user agents,
referrers and campaigns) to a fresh raw topic, then runs `webhouse worker` as child
process(es) and reports:

- events/s from the first enriched event out to the last (steady state), and wall time
  from start including faust start-up and the final idle sweep;
- peak RSS of each worker process (VmHWM);
- the same events through ``WorkerCore`` in this process without Kafka, split into
  decode / enrich / full core, to show where a worker's CPU time goes.
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka
from pipeline.serde import SingleObjectSerde
from pipeline.settings import (
    KafkaSettings,
    MetricsSettings,
    SessionPolicySettings,
    Settings,
    WorkerSettings,
)
from pipeline.topics import Topics
from processors.enrichment import Enricher
from processors.worker.app import app_id
from processors.worker.core import Incoming, WorkerCore
from processors.worker.runner import start_worker_process

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
]
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
REFERRERS = [None, None, "https://www.google.com/", "https://l.facebook.com/", "https://shop.example/c/1"]
CAMPAIGNS = ["", "", "", "?utm_source=news&utm_medium=email&utm_campaign=spring",
             "?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=abc"]  # fmt: skip


def simulate(n: int, devices: int, seed: int = 1) -> list[tuple[bytes, dict[str, Any]]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    clock = start
    out = []
    agent_of = {d: rng.choice(AGENTS) for d in range(devices)}
    for i in range(n):
        clock += timedelta(milliseconds=rng.randint(50, 500))  # ~7.6 h of event time per 100k
        d = rng.randrange(devices)
        anon = f"anon-{d}"
        product = {"product_id": f"p-{rng.randrange(500)}", "name": "Thing", "price": 9.5, "quantity": 1}
        roll = rng.random()
        record: dict[str, Any] = {
            "message_id": f"m-{i}",
            "type": "page",
            "channel": "web",
            "anonymous_id": anon,
            "timestamp": clock - timedelta(milliseconds=rng.randint(0, 3000)),
            "sent_at": clock,
            "received_at": clock,
            "context": {
                "page": {
                    "url": f"https://shop.example/p/{rng.randrange(500)}{rng.choice(CAMPAIGNS)}",
                    "referrer": rng.choice(REFERRERS),
                    "title": "A product",
                },
                "user_agent": BOT if d % 50 == 0 else agent_of[d],
                "ip": f"81.2.{d % 250}.{i % 250}",
                "locale": "en-GB",
            },
        }
        if roll < 0.35:
            record.update(type="track", event="Product Viewed", commerce={"products": [product]})
        elif roll < 0.45:
            record.update(type="track", event="Product Added", commerce={"products": [product]})
        elif roll < 0.47:
            record.update(type="track", event="Order Completed", user_id=f"cust-{d}",
                          commerce={"order_id": f"o-{i}", "revenue": 19.0, "currency": "EUR",
                                    "products": [product]})  # fmt: skip
        elif roll < 0.48:
            record.update(type="track", event="Signed In", user_id=f"cust-{d}")
        out.append((anon.encode(), record))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def committed_count(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Raw events the worker group has processed and committed."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in parts)
    finally:
        consumer.close()


def produced_count(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        )
    finally:
        consumer.close()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_breakdown(settings: Settings, values: list[bytes], limit: int = 50_000) -> None:
    values = values[:limit]
    core = WorkerCore(settings)
    serde = core.codec
    t = time.perf_counter()
    records = [serde.decode(v) for v in values]
    decode_s = time.perf_counter() - t
    enricher = Enricher()
    t = time.perf_counter()
    for r in records:
        enricher.enrich(r)
    enrich_s = time.perf_counter() - t
    t = time.perf_counter()
    now = datetime.now(UTC)
    for start in range(0, len(values), 2000):
        batch = [Incoming("raw", 0, start + i, None, v) for i, v in enumerate(values[start : start + 2000])]
        core.process(batch, now)
    core.sweep([0])
    core_s = time.perf_counter() - t
    n = len(values)
    print(f"in-process, {n} events, one core, no Kafka:")
    print(f"  decode only         {n / decode_s:10.0f} ev/s  ({decode_s / n * 1e6:5.1f} us/event)")
    print(f"  enrich only         {n / enrich_s:10.0f} ev/s  ({enrich_s / n * 1e6:5.1f} us/event)")
    print(f"  WorkerCore.process  {n / core_s:10.0f} ev/s  ({core_s / n * 1e6:5.1f} us/event, everything)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--within", type=float, default=WorkerSettings().batch_within_s)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--debug", action="store_true", help="worker logs per-batch timings")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="webhouse-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        defaults = KafkaSettings()
        broker = LocalKafka(data_dir=tmp / "kafka", bootstrap=f"127.0.0.1:{free_port()}",
                            controller_port=free_port(), version=defaults.local_version,
                            jar_cache=defaults.local_jar_cache, heap="512m")  # fmt: skip
        broker.up()
        bootstrap = broker.bootstrap
    try:
        kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}",
                              default_partitions=args.partitions)  # fmt: skip
        topics = Topics.from_settings(kafka)
        ensure_topics(bootstrap, topics.specs())
        settings = Settings(
            kafka=kafka,
            worker=WorkerSettings(data_dir=tmp / "worker", batch_max_events=args.batch, extensions=[],
                                  batch_within_s=args.within,
                                  session=SessionPolicySettings(idle_close_interval_s=1.0)),
            metrics=MetricsSettings(port=0),
            log_level="DEBUG" if args.debug else "INFO",
        )  # fmt: skip
        print(f"simulating and pre-loading {args.events} events ...", flush=True)
        serde = SingleObjectSerde("customer_event")
        events = simulate(args.events, args.devices)
        values = [serde.encode(r) for _, r in events]
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 20,
                "compression.type": "lz4",
                "enable.idempotence": True,
            }
        )
        for (key, _), value in zip(events, values, strict=True):
            while True:
                try:
                    producer.produce(topics.raw_events, value, key=key)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.flush(120)
        del events
        print(f"  {len(values)} events, {sum(map(len, values)) / len(values):.0f} bytes each on average")

        start = time.monotonic()
        workers = [start_worker_process(settings, tmp / f"worker{i}.log") for i in range(args.workers)]
        group = app_id(settings)
        first = None
        consumed = enriched = 0
        try:
            while True:
                try:
                    consumed = committed_count(bootstrap, group, topics.raw_events, args.partitions)
                except KafkaException as exc:  # the group's coordinator is still being set up
                    if exc.args[0].code() not in COORDINATOR_NOT_READY:
                        raise
                now = time.monotonic()
                if consumed and first is None:
                    first = (now, consumed)
                if consumed >= args.events:
                    break
                if now - start > 1800 or any(w.poll() is not None for w in workers):
                    print(f"  gave up: {consumed} processed after {now - start:.0f} s")
                    break
                time.sleep(0.5)
            end = time.monotonic()
            # The last events wait for the watermark; the idle sweep releases them.
            deadline = time.monotonic() + 120
            while enriched < args.events and time.monotonic() < deadline:
                enriched = produced_count(bootstrap, topics.enriched_events, args.partitions)
                time.sleep(0.5)
            peaks = [peak_rss_mb(w.pid) for w in workers]
        finally:
            for w in workers:
                w.terminate()
                w.wait(30)
        assert first is not None
        steady = (consumed - first[1]) / max(1e-9, end - first[0])
        print(f"worker(s)={args.workers} partitions={args.partitions} batch={args.batch}:")
        print(f"  {consumed} raw events processed (committed) in {end - start:.1f} s from start "
              f"(incl. faust start-up); {enriched} enriched events out")  # fmt: skip
        print(f"  steady state: {steady:,.0f} events/s (first commit -> last)")
        print(f"  worker logs: {tmp}")
        print(f"  peak RSS per worker: {', '.join(f'{p:.0f} MiB' for p in peaks)}")
        in_process_breakdown(settings, values)
    finally:
        if broker is not None:
            broker.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
