"""The worker as a runtime stage: raw events in; enriched events, sessions, links out.

``WorkerCore`` decides; this adapter turns its batch results into a ``Step`` the runtime
commits with the consumed offsets in one transaction (``pipeline.runtime.kafka``), and
runs the timer that closes visits on quiet partitions and reports idle ones.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import datetime

from pipeline.erasure import Erasure
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Record, RunnerView, Step, Stores, StoreWrite
from pipeline.settings import Settings
from pipeline.topics import Topics
from processors.worker.core import BatchResult, WorkerCore
from processors.worker.metrics import WorkerMetrics

DEVICES = "devices"
CLOCKS = "clocks"
EXPIRY_INTERVAL_S = 60.0  # wall clock between scans for expired devices (a scan visits every device)


class WorkerStage:
    name = "worker"
    inputs: tuple[str, ...]
    broadcasts: tuple[str, ...]
    store_names: tuple[str, ...] = (DEVICES, CLOCKS)

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.core = WorkerCore(settings, metrics)
        topics = Topics.from_settings(settings.kafka)
        self.inputs = (topics.raw_events,)
        self.broadcasts = (topics.erasures,)
        self.tick_interval_s = settings.worker.session.idle_close_interval_s
        self.owned: frozenset[int] = frozenset()
        self.ttl_ms = int(settings.worker.device_ttl_s * 1000)
        self.next_expiry = time.monotonic() + EXPIRY_INTERVAL_S

    def on_broadcast(self, records: list[Incoming], stores: Stores, now: datetime) -> Step:
        """Erasures (``webhouse forget``): the customer's devices go, with a tombstone each."""
        step = Step()
        for record in records:
            result = self.core.apply_erasure(Erasure.from_bytes(record.value))
            step.extend(to_step(result))
            step.writes.extend(StoreWrite(DEVICES, p, key, None) for key, p in result.erased.items())
        return step

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        self.core.load(stores[DEVICES].items(), stores[CLOCKS].items(), set(partitions))
        self.owned = partitions

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        return to_step(self.core.process(batch, now))

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        """Quiet = nothing new for a whole interval AND nothing left to read: a partition waiting
        behind another one's backlog is not quiet, only not yet served. Quiet partitions with open
        visits are closed; those quiet for ``worker.idle_after_s`` are reported idle
        (``pipeline.runtime.control``), so no stage's clock waits on them."""
        interval = self.tick_interval_s
        flush = {p for p in self.core.pending_partitions() if view.quiet_for(p) >= interval}
        idle_after = self.settings.worker.idle_after_s
        idle = {p for p in self.core.unreported_partitions(self.owned) if view.quiet_for(p) >= idle_after}
        caught: Collection[int] = view.caught_up(flush | idle) if flush or idle else set()
        step = Step()
        if self.ttl_ms and time.monotonic() >= self.next_expiry:
            self.next_expiry = time.monotonic() + EXPIRY_INTERVAL_S
            result = self.core.expire(self.ttl_ms)
            step.extend(to_step(result))
            step.writes.extend(StoreWrite(DEVICES, p, key, None) for key, p in result.erased.items())
        if flush & set(caught):
            step.extend(to_step(self.core.sweep(sorted(flush & set(caught)))))
        if idle & set(caught):
            step.extend(to_step(self.core.idle(sorted(idle & set(caught)))))
        return step


def to_step(result: BatchResult) -> Step:
    step = Step([Record(o.topic, o.key, o.value, o.partition, o.headers) for o in result.outputs])
    step.writes.extend(
        StoreWrite(DEVICES, p, key, value or None) for key, (p, value) in result.devices.items()
    )
    step.writes.extend(StoreWrite(CLOCKS, p, str(p).encode(), value) for p, value in result.clocks.items())
    return step
