"""How many events per second one collector process turns into acknowledged Kafka records.

Starts its own broker (free loopback ports, data under a temp dir) unless --bootstrap is
given, runs the collector in-process on a free port, and posts Segment batches from a few
client threads over keep-alive connections. Reports events/s and request latency
percentiles. Not a test: numbers depend on the machine.

    .venv/bin/python bench/collector_throughput.py --batches 400 --batch-size 100 --clients 4
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import requests

from pipeline.collector.server import ThreadedCollector
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import broker_or_ephemeral
from pipeline.settings import CollectorSettings, KafkaSettings, Settings
from pipeline.topics import Topics


def batch(size: int, visitor: int) -> dict[str, Any]:
    events = []
    for i in range(size):
        events.append(
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": f"anon-{visitor}-{i % 7}",
                "messageId": uuid.uuid4().hex,
                "timestamp": "2026-11-23T10:00:00.000Z",
                "properties": {"product_id": f"p-{i}", "price": 12.5, "category": "mugs", "colour": "blue"},
                "context": {
                    "page": {"url": "https://shop.example/p/1", "path": "/p/1", "title": "Mug"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "ip": "203.0.113.9",
                    "library": {"name": "analytics.js", "version": "5.0"},
                },
            }
        )
    return {"batch": events}


def client(url: str, n: int, count: int, batch_size: int) -> list[float]:
    bodies = [batch(batch_size, n * 100 + v) for v in range(8)]
    session = requests.Session()
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        response = session.post(url, json=bodies[i % len(bodies)], auth=("bench", ""), timeout=30)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


def run(bootstrap: str, args: argparse.Namespace) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, Topics.from_settings(kafka).specs())
    settings = Settings(kafka=kafka, collector=CollectorSettings(port=0, write_keys={"bench": "bench"}))
    per_client = args.batches // args.clients
    with ThreadedCollector(settings) as collector:
        url = f"{collector.url}/v1/batch"
        requests.post(url, json=batch(args.batch_size, 0), auth=("bench", ""), timeout=30)  # warm-up
        # Clients in processes of their own: in-process threads would share the server's GIL.
        with ProcessPoolExecutor(args.clients, mp_context=get_context("spawn")) as pool:
            started = time.perf_counter()
            jobs = [pool.submit(client, url, n, per_client, args.batch_size) for n in range(args.clients)]
            latencies = [x for job in jobs for x in job.result()]
            wall = time.perf_counter() - started
        registry = collector.metrics.registry
        produce_sum = registry.get_sample_value("webhouse_collector_produce_seconds_sum") or 0.0
        produce_count = registry.get_sample_value("webhouse_collector_produce_seconds_count") or 1.0

    events = per_client * args.clients * args.batch_size
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{events} events in {per_client * args.clients} batches of {args.batch_size}, {args.clients} clients"
    )
    print(f"throughput: {events / wall:,.0f} events/s ({wall:.1f} s)")
    print(f"request latency: p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")
    print(f"of which waiting for broker acks: mean {produce_sum / produce_count * 1000:.1f} ms per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker; default: start one")
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        run(bootstrap, args)


if __name__ == "__main__":
    main()
