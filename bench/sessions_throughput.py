"""Per-event cost of the worker's sessionizer, the only one: the worker stage without Kafka.

Simulates one partition: devices with a few visits each, events slightly out of order (within the
allowed lateness, a few beyond), sent as raw Segment events to the worker stage on the in-memory
runtime (``pipeline.runtime.memory``) in batches, as the Kafka runner hands them over. A batch costs
what the worker pays per event besides the broker: decode, enrich, stitch, sessionize, encode the
outputs, and the changed device states serialised for the changelog. Reports events/s and
microseconds per event of CPU time of this process (a busy machine skews it less than wall time).
Not a test: numbers depend on the machine. ``bench/worker_throughput.py`` measures it with a broker.

    .venv/bin/python bench/sessions_throughput.py [--events 200000] [--devices 20000] [--batch 500]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.stage import Record
from pipeline.serde import SingleObjectSerde
from pipeline.settings import SessionPolicySettings, Settings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def make_events(count: int, devices: int, seed: int) -> list[dict[str, Any]]:
    """Raw page views in arrival order."""
    rng = random.Random(seed)
    clock = {f"dev-{i}": T0 + timedelta(seconds=rng.uniform(0, 3600)) for i in range(devices)}
    names = list(clock)
    timed = []
    for index in range(count):
        device = rng.choice(names)
        step = rng.expovariate(1 / 60) if rng.random() < 0.9 else rng.uniform(1800, 7200)
        clock[device] += timedelta(seconds=step)
        when = clock[device]
        jitter = rng.uniform(0, 120) if rng.random() < 0.98 else rng.uniform(300, 900)
        campaign = {"source": "news", "medium": "email", "name": "n42"} if rng.random() < 0.05 else None
        page = rng.choice(["/", "/shoes", "/cart", "/checkout"])
        event = {
            "message_id": f"e-{index}",
            "type": "page",
            "channel": "web",
            "anonymous_id": device,
            "timestamp": when,
            "received_at": when + timedelta(seconds=jitter),
            "context": {"page": {"url": f"https://shop.example{page}"}, "user_agent": FIREFOX,
                        "campaign": campaign},
        }  # fmt: skip
        timed.append((when + timedelta(seconds=jitter), index, event))
    timed.sort(key=lambda item: item[:2])
    return [event for _, _, event in timed]


def measure(values: list[bytes], settings: Settings, batch: int) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of this process, outputs, device states)."""
    topics = Topics.from_settings(settings.kafka)
    broker = MemoryBroker(1)
    metrics = WorkerMetrics(CollectorRegistry())
    runner = MemoryRunner(lambda: WorkerStage(settings, metrics), broker, "bench-sessions")
    for value in values:
        broker.append(Record(topics.raw_events, None, value, 0))
    outputs = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while runner.unread():
        outputs += len(runner.process(runner.take(topics.raw_events, 0, batch)).outputs)
    outputs += len(runner.tick().outputs)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stage = runner.stage
    assert isinstance(stage, WorkerStage)
    return wall, cpu, outputs, len(stage.core.devices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    session = SessionPolicySettings(split_at_midnight=True, midnight_timezone="Europe/Berlin")
    settings = Settings(worker=WorkerSettings(session=session, extensions=[]))
    built = time.perf_counter()
    serde = SingleObjectSerde("customer_event")
    values = [serde.encode(event) for event in make_events(args.events, args.devices, args.seed)]
    print(f"built {len(values)} events for {args.devices} devices in {time.perf_counter() - built:.1f}s")
    wall, cpu, outputs, states = measure(values, settings, args.batch)
    print(
        f"worker stage, batches of {args.batch}: {len(values) / cpu:9.0f} events/s per CPU second"
        f" ({cpu / len(values) * 1e6:5.2f} us CPU, {wall / len(values) * 1e6:5.2f} us wall per event;"
        f" {outputs} outputs, {states} device states)"
    )


if __name__ == "__main__":
    main()
