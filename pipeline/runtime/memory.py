"""The stream runtime without a broker: the same stages, stores and checkpoints, on lists.

Tests and tools run the production stages here (``processors.worker.stage``,
``triggers.stages``): topics are in-memory partition logs, a stage's changelogs are
topics like any other, and each batch's step is applied as one unit (outputs appended,
state written, offsets advanced), as a Kafka transaction is. ``restart`` throws a
stage's memory away and rebuilds it from its changelogs, as a process restart does. A stage's
``broadcasts`` (erasures) are read whole, before the inputs that follow them, and all again
after a restart, as ``KafkaRunner`` does. With a ``state_dir`` the stores are the production's
``DiskStore``: writes land after each step with the changelog length reached, and a restart resumes
the file from there, reading only the changelog's tail.
Which runner reads next and how much it takes is the caller's choice (``MemoryPipeline``
draws it from a seeded random generator): a property test can try many interleavings.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pipeline.errors import ProcessingError, ProduceError
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Record, Stage, Step
from pipeline.runtime.store import DiskStore, StateFiles, StateStore, restore
from pipeline.topics import Topics

FIXED_NOW = datetime(2026, 1, 1, tzinfo=UTC)
# The largest record ``KafkaRunner``'s producer takes (librdkafka's ``message.max.bytes``, which it
# leaves at its default): a larger one fails the step's transaction there, so it fails here too.
RECORD_MAX_BYTES = 1_000_000
IDLE_TICKS_MAX = 100_000  # a stage whose timer always has work would never let ``run`` end


class MemoryBroker:
    """Topics as partition logs. Keyed records without a partition go by a stable hash of the key."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.logs: dict[str, dict[int, list[Incoming]]] = {}

    def log(self, topic: str, partition: int) -> list[Incoming]:
        return self.logs.setdefault(topic, {}).setdefault(partition, [])

    def append(self, record: Record) -> Incoming:
        size = (
            len(record.key or b"")
            + len(record.value or b"")
            + sum(len(n) + len(v or b"") for n, v in record.headers)
        )
        if size > RECORD_MAX_BYTES:
            raise ProduceError(f"a record of {size} bytes to {record.topic}: Kafka takes {RECORD_MAX_BYTES}")
        partition = record.partition
        if partition is None:
            partition = zlib.crc32(record.key or b"") % self.partitions
        log = self.log(record.topic, partition)
        message = Incoming(record.topic, partition, len(log), record.key, record.value or b"", None,
                           tuple(record.headers))  # fmt: skip
        log.append(message)
        return message

    def records(self, topic: str) -> list[Incoming]:
        """Every record of a topic, partition by partition."""
        return [m for p in sorted(self.logs.get(topic, {})) for m in self.logs[topic][p]]


class MemoryRunner:
    """One stage as its own consumer group member owning every partition (see module docstring)."""

    def __init__(self, make_stage: Callable[[], Stage], broker: MemoryBroker, group_id: str,
                 now: Callable[[], datetime] = lambda: FIXED_NOW,
                 state_dir: Path | None = None) -> None:  # fmt: skip
        self.make_stage = make_stage
        self.broker = broker
        self.state_dir = state_dir
        self.files: StateFiles | None = None
        self.group_id = group_id
        self.now = now
        self.committed: dict[tuple[str, int], int] = {}
        self.stage = make_stage()
        self.stores: dict[str, StateStore | DiskStore] = {}
        self.broadcast_read: dict[str, int] = {}  # broadcast topic -> records applied
        self.restart()

    # -- the runtime's work ----------------------------------------------------------------

    def restart(self) -> None:
        """A new process: a fresh stage, its stores read back from the changelogs."""
        self.stage = self.make_stage()
        if self.files is not None:
            self.files.close()
        self.files = StateFiles(self.state_dir) if self.state_dir is not None else None
        self.stores = {
            name: self.files.store(name) if self.files is not None else StateStore()
            for name in self.stage.store_names
        }
        for name, store in self.stores.items():
            changelog = Topics.changelog(self.group_id, name)
            bounds = {p: (0, len(self.broker.log(changelog, p))) for p in range(self.broker.partitions)}
            restore(store, changelog, bounds, partial(self._read, changelog))
        self.stage.assign(frozenset(range(self.broker.partitions)), self.stores)
        self.broadcast_read = {}  # the restored state may predate them: every one applied again
        self.apply_broadcasts()

    def _read(self, changelog: str, starts: Mapping[int, int]) -> Iterator[tuple[int, bytes, bytes | None]]:
        for partition, start in starts.items():
            for message in self.broker.log(changelog, partition)[start:]:
                if message.key is not None:
                    yield partition, message.key, message.value or None

    def unread(self) -> list[tuple[str, int]]:
        return [
            (topic, p)
            for topic in self.stage.inputs
            for p in range(self.broker.partitions)
            if self.committed.get((topic, p), 0) < len(self.broker.log(topic, p))
        ]

    def take(self, topic: str, partition: int, count: int) -> list[Incoming]:
        start = self.committed.get((topic, partition), 0)
        return self.broker.log(topic, partition)[start : start + count]

    def apply_broadcasts(self) -> Step:
        """Broadcast records not applied yet (``on_broadcast``), in one step."""
        records: list[Incoming] = []
        for topic in getattr(self.stage, "broadcasts", ()):
            log = self.broker.records(topic)
            records.extend(log[self.broadcast_read.get(topic, 0) :])
            self.broadcast_read[topic] = len(log)
        if not records:
            return Step()
        step: Step = self.stage.on_broadcast(records, self.stores, self.now())  # type: ignore[attr-defined]
        self._checkpoint(step)
        return step

    def process(self, batch: list[Incoming]) -> Step:
        """One batch (after the broadcasts before it); the steps' outputs and writes, applied."""
        applied = self.apply_broadcasts()
        step = self.stage.process(batch, self.stores, self.now())
        self._checkpoint(step)
        for message in batch:
            self.committed[(message.topic, message.partition)] = message.offset + 1
        return Step().extend(applied).extend(step)

    def tick(self) -> Step:
        applied = self.apply_broadcasts()
        step = self.stage.tick(self.stores, self, self.now())
        self._checkpoint(step)
        return Step().extend(applied).extend(step)

    def apply(self, step: Step) -> None:
        """A step the test made by calling the stage's logic itself, committed as the runtime would."""
        self._checkpoint(step)

    def _checkpoint(self, step: Step) -> None:
        for record in step.outputs:
            self.broker.append(record)
        reached: dict[str, dict[int, int]] = {}
        for write in step.writes:
            self.stores[write.store].put(write.partition, write.key, write.value)
            changelog = Topics.changelog(self.group_id, write.store)
            message = self.broker.append(Record(changelog, write.key, write.value, write.partition))
            reached.setdefault(write.store, {})[write.partition] = message.offset + 1
        for name, store in self.stores.items():
            store.commit(reached.get(name, {}), Topics.changelog(self.group_id, name))

    # -- RunnerView: in memory, read-to-the-end partitions are caught up and quiet ---------

    def caught_up(self, partitions: Collection[int]) -> set[int]:
        unread = {p for _, p in self.unread()}
        return {p for p in partitions if p not in unread}

    def quiet_for(self, partition: int) -> float:
        return 0.0 if any(p == partition for _, p in self.unread()) else float("inf")


class MemoryPipeline:
    """Several runners over one broker, driven in an order drawn from ``rng`` (batch sizes too)."""

    def __init__(self, broker: MemoryBroker, runners: Iterable[MemoryRunner], rng: random.Random,
                 max_batch: int = 4, tick_chance: float = 0.2) -> None:  # fmt: skip
        self.broker = broker
        self.runners = list(runners)
        self.rng = rng
        self.max_batch = max_batch
        self.tick_chance = tick_chance

    def step(self) -> bool:
        """One batch of one runner with unread input (and maybe its timer); False when all is read."""
        ready = [r for r in self.runners if r.unread()]
        if not ready:
            return False
        runner = self.rng.choice(ready)
        topic, partition = self.rng.choice(runner.unread())
        runner.process(runner.take(topic, partition, self.rng.randint(1, self.max_batch)))
        if self.rng.random() < self.tick_chance:
            runner.tick()
        return True

    def run(self, restart_chance: float = 0.0) -> None:
        """Until every runner has read everything, then each timer until it has nothing left to do
        (quiet partitions; a sweep that goes on over several steps)."""
        while True:
            while self.step():
                if restart_chance and self.rng.random() < restart_chance:
                    self.rng.choice(self.runners).restart()
            for runner in self.runners:
                for _ in range(IDLE_TICKS_MAX):
                    if not runner.tick():
                        break
                else:
                    raise ProcessingError(runner.group_id, f"still busy after {IDLE_TICKS_MAX} timer calls")
            if not any(r.unread() for r in self.runners):
                return
