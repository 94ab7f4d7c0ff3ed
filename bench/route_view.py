"""What the event view in the enriched event's headers saves the triggers' route, without Kafka.

    .venv/bin/python bench/route_view.py --events 20000 --rounds 7

Puts the benches' workload through the worker stage in this process (``MemoryRunner``), then
times, alternated round by round, CPU per enriched event of:

- ``route, headers``: the route reading each event's view from its headers (what it does now);
- ``route, decoding``: the same events without the headers (what it did before, and still does
  for events a worker from before wrote): the whole event decoded, its view made and encoded;
- ``worker, headers``: what writing the headers costs the worker (view and JSON of each event).

The saving per event is ``decoding - headers - worker``; min and median over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import workload
from prometheus_client import CollectorRegistry

from pipeline.event_view import view_headers
from pipeline.runtime.control import is_control
from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Record
from pipeline.serde import SingleObjectSerde
from pipeline.settings import Settings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage
from triggers.metrics import TriggerMetrics
from triggers.stages import RouteStage


def enriched_events(events: int) -> list[Incoming]:
    settings = Settings(worker=WorkerSettings(extensions=[]))
    topics = Topics.from_settings(settings.kafka)
    broker = MemoryBroker(topics.partitions)
    worker = MemoryRunner(lambda: WorkerStage(settings, WorkerMetrics(CollectorRegistry())), broker, "w")
    for i, (key, value) in enumerate(workload.load(events).messages):
        broker.append(Record(topics.raw_events, key, value, i % topics.partitions))
    for partition in range(topics.partitions):
        while batch := worker.take(topics.raw_events, partition, 2_000):
            worker.process(batch)
    return [m for m in broker.records(topics.enriched_events) if not is_control(m.headers)]


def cpu_us_per_event(work: Callable[[], object], count: int) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    messages = enriched_events(args.events)
    bare = [Incoming(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms, ()) for m in messages]
    serde = SingleObjectSerde("customer_event")
    decoded = [serde.decode(m.value) for m in messages]
    route = RouteStage(Settings(), TriggerMetrics(CollectorRegistry())).core
    now = datetime.now(UTC)
    alternatives: dict[str, Callable[[], object]] = {
        "route, headers": lambda: route.route(messages, now),
        "route, decoding": lambda: route.route(bare, now),
        "worker, headers": lambda: [view_headers(r, r["enrichment"]) for r in decoded],
    }
    figures: dict[str, list[float]] = {name: [] for name in alternatives}
    for _ in range(args.rounds):
        for name, work in alternatives.items():
            route.forget_handovers()
            figures[name].append(cpu_us_per_event(work, len(messages)))
    print(f"{len(messages)} enriched events, {args.rounds} rounds alternated; CPU us per event")
    print("| | min | median |\n|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} |")
    saved = [d - h - w for h, d, w in zip(*figures.values(), strict=True)]
    print(f"| saved (decoding - headers - worker) | {min(saved):.1f} | {statistics.median(saved):.1f} |")


if __name__ == "__main__":
    main()
