"""What a stream stage is to the runtime: batches in, outputs and state writes out.

A stage holds the logic (enrich and sessionize, route, evaluate rules); the runtime
(``pipeline.runtime.kafka`` on a broker, ``pipeline.runtime.memory`` in tests) moves
records, keeps the state stores and commits. A stage never talks to Kafka: everything
it wants written comes back in a ``Step``, and the runtime writes the step's outputs,
its state writes and the consumed offsets together (one Kafka transaction), so state,
outputs and offsets always move as one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pipeline.immutable import immutable
from pipeline.runtime.messages import Incoming

Headers = tuple[tuple[str, bytes], ...]


@immutable
class Record:
    """One record to produce; ``partition`` None lets the key choose (murmur2, as Java clients do)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = ()


@immutable
class StoreWrite:
    """A state change: ``value`` None deletes the key. ``partition`` is the input partition it belongs to."""

    store: str
    partition: int
    key: bytes
    value: bytes | None


@dataclass(slots=True)
class Step:
    outputs: list[Record] = field(default_factory=list)
    writes: list[StoreWrite] = field(default_factory=list)

    def extend(self, other: Step) -> Step:
        self.outputs.extend(other.outputs)
        self.writes.extend(other.writes)
        return self

    def __bool__(self) -> bool:
        return bool(self.outputs or self.writes)


Stores = Mapping[str, Mapping[bytes, bytes]]


class RunnerView(Protocol):
    """What a stage may ask the runtime about its inputs when its timer fires."""

    def caught_up(self, partitions: Collection[int]) -> set[int]:
        """Of these input partitions, those read up to the end the broker holds."""
        ...

    def quiet_for(self, partition: int) -> float:
        """Seconds (wall clock) since this input partition last delivered a record."""
        ...


class Stage(Protocol):
    """One stream stage. ``stores`` are read-only to it: it changes state by returning writes."""

    name: str
    inputs: tuple[str, ...]
    store_names: tuple[str, ...]
    tick_interval_s: float

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        """Own exactly these partition numbers from now on; ``stores`` hold their restored state.

        Also called as ``assign(frozenset())`` then ``assign(owned)`` when the runtime redoes an
        aborted batch: whatever the stage keeps outside its stores (what it remembers having
        sent, caches of the state) must be dropped here for partitions it is not given, since
        the outputs that memory stands for may have been discarded."""
        ...

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step: ...

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        """The stage's timer (wall clock, every ``tick_interval_s``): flush quiet partitions, sweep."""
        ...

    # A stage may also name ``broadcasts``: topics every instance reads whole, outside its group
    # (the erasures), handed to ``on_broadcast(records, stores, now) -> Step`` before the inputs
    # that follow them, and again after each assignment (the restored state may predate them).


class Overlay(Mapping[bytes, bytes]):
    """A store as a stage sees it in the middle of a step: its own pending writes over the store."""

    def __init__(self, base: Mapping[bytes, bytes], writes: list[StoreWrite], store: str) -> None:
        self.base = base
        self.pending: dict[bytes, bytes | None] = {w.key: w.value for w in writes if w.store == store}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.pending:
            value = self.pending[key]
            if value is None:
                raise KeyError(key)
            return value
        return self.base[key]

    def __iter__(self) -> Iterator[bytes]:
        for key in self.base:
            if key not in self.pending:
                yield key
        for key, value in self.pending.items():
            if value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)
