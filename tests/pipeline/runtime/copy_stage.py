"""A stage for runtime tests on the real broker: copies each input record to one topic."""

from __future__ import annotations

from datetime import datetime

from pipeline.runtime.stage import Incoming, Record, RunnerView, Step, Stores


class Copy:
    """Copies each record of ``source`` to ``target`` (same partition), in the batch's transaction,
    and counts what it read."""

    name = "copy"
    store_names: tuple[str, ...] = ()
    tick_interval_s = 60.0

    def __init__(self, source: str, target: str) -> None:
        self.inputs: tuple[str, ...] = (source,)
        self.target = target
        self.read = 0

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        return None

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        self.read += len(batch)
        return Step([Record(self.target, m.key, m.value, m.partition) for m in batch])

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()
