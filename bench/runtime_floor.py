"""The runtime's floor: the worker's chain of transactional hops with no logic in them.

Run by compare.py as a child process (contenders ``runtime-1hop`` and ``runtime-3hops``):

    python bench/runtime_floor.py BOOTSTRAP TOPIC_PREFIX PARTITIONS EVENTS HOPS

Each hop is a ``KafkaRunner`` (``pipeline.runtime.kafka``) running a stage that passes every
input on unchanged, in the process's threads as ``webhouse worker`` runs its stages: the
first reads the raw topic and decodes each event with the project's serde (as the worker
stage does), and writes it to the enriched topic; the second, if any, copies that to the
triggers' input topic (as the route stage does), the third to the profiles topic (as the
evaluate stage writes its outputs). Every hop commits its outputs and offsets in one
transaction per batch, with the deployed batch settings and garbage-collector threshold.

What it measures is what the deployed chain costs before any of its logic: consuming,
producing and committing at each hop, and the one Avro decode. No state, no stores, no
view, no enrichment. Each hop carries the whole raw event, where the real route and evaluate
stages carry a small JSON view, so the later hops cost a little more here than there.

Prints one JSON object (events, seconds, cpu_s, peak_rss_mb), from the first hop's first
batch to the last hop's batch holding its EVENTS-th record (that batch's own commit is
left out).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime

from floor_consumer import peak_rss_mb
from prometheus_client import CollectorRegistry

from pipeline.runtime.host import StageSpec, run_stages, runner_for
from pipeline.runtime.messages import Incoming
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import Record, RunnerView, Step, Stores
from pipeline.serde import make_serde
from pipeline.settings import KafkaSettings, Settings
from pipeline.topics import Topics


class PassOn:
    """A stage with no logic: each input goes on, as it is, to ``target`` (same key, same partition)."""

    store_names: tuple[str, ...] = ()
    tick_interval_s = 5.0

    def __init__(
        self,
        name: str,
        source: str,
        target: str,
        decode: Callable[[bytes, str], object] | None,
        on_batch: Callable[[int], None],
    ) -> None:
        self.name = name
        self.inputs: tuple[str, ...] = (source,)
        self.target = target
        self.decode = decode
        self.on_batch = on_batch

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        return None

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        step = Step()
        for message in batch:
            if self.decode is not None:
                self.decode(message.value, message.topic)
            step.outputs.append(Record(self.target, message.key, message.value, message.partition))
        self.on_batch(len(batch))
        return step

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()


class Window:
    """The timed part of the run: from the first hop's first batch to the last hop's EVENTS-th record."""

    def __init__(self, events: int, stop: threading.Event) -> None:
        self.events, self.stop = events, stop
        self.started: tuple[float, float] | None = None
        self.ended: tuple[float, float] | None = None
        self.seen = 0

    def first_hop(self, count: int) -> None:
        if self.started is None:
            self.started = (time.perf_counter(), time.process_time())

    def last_hop(self, count: int) -> None:
        self.seen += count
        if self.seen >= self.events and self.ended is None:
            self.ended = (time.perf_counter(), time.process_time())
            self.stop.set()


def chain(topics: Topics, hops: int, window: Window) -> list[PassOn]:
    """The hops: raw -> enriched (decoding) -> triggers input -> profiles, as many as asked."""
    path = (topics.raw_events, topics.enriched_events, topics.triggers_input, topics.profiles)
    if not 1 <= hops < len(path):
        raise SystemExit(f"hops must be 1 to {len(path) - 1}, not {hops}")
    serde = make_serde("customer_event", None)
    stages: list[PassOn] = []
    for i in range(hops):

        def on_batch(count: int, i: int = i) -> None:
            if i == 0:
                window.first_hop(count)
            if i == hops - 1:
                window.last_hop(count)

        decode = serde.decode if i == 0 else None
        stages.append(PassOn(f"hop{i + 1}", path[i], path[i + 1], decode, on_batch))
    return stages


def main(bootstrap: str, prefix: str, partitions: int, events: int, hops: int) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix, default_partitions=partitions)
    settings = Settings(kafka=kafka)
    stop = threading.Event()
    window = Window(events, stop)
    metrics = RuntimeMetrics(CollectorRegistry())
    stages = chain(Topics.from_settings(kafka), hops, window)
    specs = [StageSpec(stage, f"{prefix}-{stage.name}") for stage in stages]
    runners = [runner_for(spec, settings, metrics) for spec in specs]
    code = run_stages(runners, stop=stop, gc_threshold=settings.worker.gc_threshold)
    if code != 0 or window.started is None or window.ended is None:
        raise SystemExit(f"the chain stopped with exit code {code} after {window.seen} of {events} records")
    seconds = window.ended[0] - window.started[0]
    cpu = window.ended[1] - window.started[1]
    print(json.dumps({"events": window.seen, "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
