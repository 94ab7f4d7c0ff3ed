"""The worker as a runtime stage: raw events in; enriched events, sessions, links out.

``WorkerCore`` decides; this adapter turns its batch results into a ``Step`` the runtime
commits with the consumed offsets in one transaction (``pipeline.runtime.kafka``), and
runs the timer that moves quiet partitions' event clocks with the wall clock and reports idle ones.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import datetime

from pipeline.erasure import Erasure
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Record, RunnerView, Step, Stores, StoreWrite
from pipeline.runtime.store import prefetch
from pipeline.settings import Settings
from pipeline.topics import Topics
from processors.worker.core import BatchResult, WorkerCore
from processors.worker.metrics import WorkerMetrics

DEVICES = "devices"
WAITING = "waiting"  # events waiting for the watermark, one record each (processors.worker.waiting)
CLOCKS = "clocks"
EXPIRY_INTERVAL_S = 60.0  # least wall clock between scans for expired devices (a scan reads every header)
EXPIRY_COST_SHARE = 100.0  # and at least this many times a scan's own duration


class WorkerStage:
    name = "worker"
    inputs: tuple[str, ...]
    broadcasts: tuple[str, ...]
    store_names: tuple[str, ...] = (DEVICES, CLOCKS, WAITING)

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.core = WorkerCore(settings, metrics)
        topics = Topics.from_settings(settings.kafka)
        self.inputs = (topics.raw_events,)
        self.broadcasts = (topics.erasures,)
        self.tick_interval_s = settings.worker.session.idle_close_interval_s
        self.owned: frozenset[int] = frozenset()
        self.ttl_ms = int(settings.worker.device_ttl_s * 1000)
        self.visitless_ttl_ms = int(settings.worker.visitless_ttl_s * 1000)
        self.next_expiry = time.monotonic() + EXPIRY_INTERVAL_S
        # Per partition: the wall time up to which its event clock already accounts for (its last
        # record, or the last quiet advance). ``now`` is the runtime's, so a test clock drives it.
        self.accounted: dict[int, datetime] = {}

    def on_broadcast(self, records: list[Incoming], stores: Stores, now: datetime) -> Step:
        """Erasures (``webhouse forget``): the customer's devices go, with a tombstone each."""
        step = Step()
        for record in records:
            step.extend(to_step(self.core.apply_erasure(Erasure.from_bytes(record.value))))
        return step

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        self.core.load(stores[DEVICES], stores[CLOCKS].items(), set(partitions), stores[WAITING].items())
        self.owned = partitions
        self.accounted = {p: t for p, t in self.accounted.items() if p in partitions}

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        for message in batch:
            self.accounted[message.partition] = now
        # A raw event's key is its device's id (the anonymous id, else the user id): one query.
        prefetch(stores[DEVICES], (m.key for m in batch if m.key))
        return to_step(self.core.process(batch, now))

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        """Quiet = nothing new for a whole interval AND nothing left to read: a partition waiting
        behind another one's backlog is not quiet, only not yet served. A quiet partition's event
        clock moves on by the wall time it stayed quiet (``WorkerCore.advance_quiet``), so visits
        close by their own rules; those quiet for ``worker.idle_after_s`` are reported idle
        (``pipeline.runtime.control``), so no stage's clock waits on them."""
        quiet = {p for p in self.core.pending_partitions() if view.quiet_for(p) >= self.tick_interval_s}
        idle_after = self.settings.worker.idle_after_s
        idle = {p for p in self.core.unreported_partitions(self.owned) if view.quiet_for(p) >= idle_after}
        caught: Collection[int] = view.caught_up(quiet | idle) if quiet or idle else set()
        step = Step()
        if self.ttl_ms and time.monotonic() >= self.next_expiry:
            started = time.monotonic()
            step.extend(to_step(self.core.expire(self.ttl_ms, self.visitless_ttl_ms)))
            # A scan of every device's header: with a million, seconds; at most 1% of the worker.
            took = time.monotonic() - started
            self.next_expiry = time.monotonic() + max(EXPIRY_INTERVAL_S, EXPIRY_COST_SHARE * took)
        if quiet & set(caught):
            step.extend(to_step(self.core.advance_quiet(self._quiet_time(sorted(quiet & set(caught)), now))))
        if idle & set(caught):
            step.extend(to_step(self.core.idle(sorted(idle & set(caught)))))
        return step

    def _quiet_time(self, partitions: list[int], now: datetime) -> dict[int, int]:
        """Milliseconds of wall time each partition stayed quiet since last accounted for."""
        elapsed: dict[int, int] = {}
        for partition in partitions:
            since = self.accounted.get(partition, now)
            elapsed[partition] = max(0, int((now - since).total_seconds() * 1000))
            self.accounted[partition] = now
        return elapsed


def to_step(result: BatchResult) -> Step:
    """The outputs, then the state writes: changed devices, waiting events, clocks, and a tombstone
    for each device erased or expired."""
    step = Step([Record(o.topic, o.key, o.value, o.partition, o.headers) for o in result.outputs])
    step.writes.extend(
        StoreWrite(DEVICES, p, key, value or None) for key, (p, value) in result.devices.items()
    )
    step.writes.extend(StoreWrite(WAITING, p, key, value) for key, (p, value) in result.waiting.items())
    step.writes.extend(StoreWrite(CLOCKS, p, str(p).encode(), value) for p, value in result.clocks.items())
    step.writes.extend(StoreWrite(DEVICES, p, key, None) for key, p in result.erased.items())
    return step
