"""What the stream stages keep as more events go through: ``tracemalloc`` between two points.

    .venv/bin/python bench/memory_growth.py --events 120000        # ~12 minutes here
    .venv/bin/python bench/memory_growth.py --events 3000 --top 3 --json

``bench/worker_memory.py`` shows the resident set of a real worker grow; this names what grows,
without Kafka: the worker, route and evaluate stages run in this process (``MemoryRunner``, state
on disk as deployed, batches mixing the partitions as a consumer's do) over the benches' workload,
fed in four equal parts. After each part every stage reads everything it can, the in-memory
topics are emptied (they stand for Kafka, which keeps them outside the process), and a
``tracemalloc`` snapshot is taken. Printed: the traced total at each point, and the allocation
sites (by their innermost ``--frames`` frames) that grew most from the second point to the last.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import workload
from prometheus_client import CollectorRegistry
from scratch import scratch_dir

from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Record, Stage
from pipeline.settings import Settings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage
from triggers.metrics import TriggerMetrics
from triggers.stages import EvaluateStage, RouteStage

BATCH = 2000  # the runtime's default batch


def stages(
    broker: MemoryBroker, topics: Topics, state: Path, device_cache: int
) -> list[tuple[MemoryRunner, list[str]]]:
    worker_settings = Settings(worker=WorkerSettings(extensions=[], device_cache=device_cache))
    registry = CollectorRegistry()
    worker_metrics, trigger_metrics = WorkerMetrics(registry), TriggerMetrics(registry)
    made: dict[str, tuple[Callable[[], Stage], list[str]]] = {
        "w": (lambda: WorkerStage(worker_settings, worker_metrics), [topics.raw_events]),
        "r": (
            lambda: RouteStage(Settings(), trigger_metrics),
            [topics.enriched_events, topics.sessions, topics.identity],
        ),
        "e": (lambda: EvaluateStage(Settings(), trigger_metrics), [topics.triggers_input]),
    }
    return [
        (MemoryRunner(make, broker, group, state_dir=state / group), inputs)
        for group, (make, inputs) in made.items()
    ]


def mixed_batch(runner: MemoryRunner, inputs: list[str], partitions: int) -> list[Incoming]:
    each = max(1, BATCH // (len(inputs) * partitions))
    return [m for t in inputs for p in range(partitions) for m in runner.take(t, p, each)]


def drain(runners: list[tuple[MemoryRunner, list[str]]], broker: MemoryBroker, partitions: int) -> None:
    """Every stage reads what it can, in turns; then the topics' records are let go (Kafka's)."""
    while True:
        batches = 0
        for runner, inputs in runners:
            batch = mixed_batch(runner, inputs, partitions)
            if batch:
                runner.process(batch)
                batches += 1
        if not batches:
            break
    for logs in broker.logs.values():
        for log in logs.values():
            log[:] = [None] * len(log)  # type: ignore[list-item]  # offsets stay, the bytes go


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--device-cache", type=int, default=5_000, help="worker.device_cache")
    parser.add_argument("--frames", type=int, default=4, help="frames kept per allocation")
    parser.add_argument("--top", type=int, default=10, help="allocation sites printed")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    with scratch_dir("webhouse-growth-") as tmp:
        return measure(args, tmp)


def measure(args: argparse.Namespace, tmp: Path) -> int:
    """The run, its stages' state files in ``tmp``."""
    messages = workload.load(args.events).messages
    topics = Topics.from_settings(Settings().kafka)
    broker = MemoryBroker(topics.partitions)
    runners = stages(broker, topics, tmp, args.device_cache)
    tracemalloc.start(args.frames)
    parts = [len(messages) * (i + 1) // 4 for i in range(4)]
    points: list[tuple[int, tracemalloc.Snapshot]] = []
    for i, (key, value) in enumerate(messages):
        broker.append(Record(topics.raw_events, key, value, i % topics.partitions))
        if i + 1 in parts:
            drain(runners, broker, topics.partitions)
            gc.collect()
            points.append((i + 1, tracemalloc.take_snapshot()))
            print(
                f"{i + 1:>9,} events: {tracemalloc.get_traced_memory()[0] / 2**20:7.1f} MiB traced",
                flush=True,
            )
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    grown = points[-1][1].filter_traces(ignore).compare_to(points[1][1].filter_traces(ignore), "traceback")
    print(f"grew most from {points[1][0]:,} to {points[-1][0]:,} events:")
    sites = []
    for stat in grown[: args.top]:
        frames = [
            f"{frame.filename.removeprefix(str(Path.cwd()) + '/')}:{frame.lineno}" for frame in stat.traceback
        ]
        sites.append({"mib": round(stat.size_diff / 2**20, 2), "blocks": stat.count_diff, "frames": frames})
        print(
            f"  {stat.size_diff / 2**20:6.2f} MiB {stat.count_diff:+8,} blocks  "
            + " <- ".join(reversed(frames))
        )
    if args.json:
        traced = [
            [n, round(sum(s.size for s in snap.statistics("filename")) / 2**20, 1)] for n, snap in points
        ]
        print(json.dumps({"events": args.events, "traced_mib": traced, "grew_most": sites}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
