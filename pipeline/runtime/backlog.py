"""How far the stages after this one are behind: what bounds a head stage's lead in a catch-up.

The worker stage reads the raw topic faster than the trigger stages after it can follow (in one
process they share an interpreter lock; apart, they still do more work per event). In a catch-up
it ran hundreds of thousands of records ahead of them, and what the evaluate stage holds while
it lags grows with that lead (docs/performance.md, "Memory over a long run"), and its alerts come
at the end of the replay. With a bound set (``worker.downstream_backlog_max``, off by default: it
costs throughput) a head stage stops reading while its downstream consumer groups have more than
that many records unread, and goes on once they are back under it.

``DownstreamBacklog`` asks the broker, through an admin client, for the groups' committed offsets
and the read-committed ends of their input topics, every ``every_s`` (``unread``: what lies
between them, transaction markers aside); the answer is collected on a
later call, never waited for, so the head stage's loop never blocks on it. Until a first answer
(and when the broker does not answer) the backlog counts as unknown: the head reads on, so a
broker that cannot be asked never stops the pipeline, it only leaves the lead unbounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from pipeline.ends import settle


class BacklogAdmin(Protocol):
    """The part of confluent-kafka's ``AdminClient`` used here (tests pass a fake)."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...

    def list_offsets(self, topic_partition_offsets: dict[TopicPartition, OffsetSpec],
                     **kwargs: Any) -> dict[TopicPartition, Future[Any]]: ...  # fmt: skip

    def list_consumer_group_offsets(
        self, list_consumer_group_offsets_request: list[ConsumerGroupTopicPartitions], **kwargs: Any
    ) -> dict[str, Future[Any]]: ...


class DownstreamBacklog:
    """Records the ``groups`` (group id -> the topics it reads) have not committed yet, all partitions."""

    def __init__(self, admin: BacklogAdmin, groups: Mapping[str, tuple[str, ...]], limit: int,
                 every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.admin = admin
        self.groups = dict(groups)
        self.limit = limit
        self.every_s = every_s
        self.clock = clock
        self.unread: int | None = None  # the last answer; None: not known
        self.unread_by_group: dict[str, int] = {}  # the last answer, per group
        self.never_committed: frozenset[str] = frozenset()  # groups of the last answer with no commit
        self._partitions: dict[str, list[TopicPartition]] = {}  # group -> its input partitions
        self._ends: dict[TopicPartition, Future[Any]] = {}
        self._committed: dict[str, Future[Any]] = {}
        self._next_at = clock()

    def over(self) -> bool:
        """Whether the last known backlog is above the bound (asking again when due)."""
        self.probe()
        return self.unread is not None and self.unread > self.limit

    def probe(self) -> None:
        """Collect a complete answer if one came; ask again when due and none is outstanding."""
        asked = [*self._ends.values(), *self._committed.values()]
        if asked and all(future.done() for future in asked):
            self.unread = self._count()
            self._ends, self._committed = {}, {}
        now = self.clock()
        if self._ends or self._committed or now < self._next_at:
            return
        self._next_at = now + self.every_s
        self._ask()

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for the questions still out (``pipeline.ends.settle``)."""
        settle([*self._ends.values(), *self._committed.values()], timeout_s)
        self._ends, self._committed = {}, {}

    def _ask(self) -> None:
        try:
            if not self._partitions:
                self._partitions = self._input_partitions()
            every = [tp for tps in self._partitions.values() for tp in tps]
            self._ends = self.admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in every},
                isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=max(self.every_s, 5.0),
            )  # fmt: skip
            # One group per request: the admin API takes no more.
            self._committed = {
                group: self.admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group, tps)], require_stable=False
                )[group]
                for group, tps in self._partitions.items()
            }
        except KafkaException:
            self._ends, self._committed = {}, {}  # not asked this time; unknown stays unknown

    def _input_partitions(self) -> dict[str, list[TopicPartition]]:
        topics = self.admin.list_topics(timeout=5).topics
        return {
            group: [TopicPartition(t, p) for t in inputs if t in topics for p in sorted(topics[t].partitions)]
            for group, inputs in self.groups.items()
        }

    def describe(self) -> str:
        """The last answer in words, for the log line when the head stage holds back."""
        groups = ", ".join(f"{group} {n:,}" for group, n in sorted(self.unread_by_group.items()))
        text = f"{self.unread or 0:,} records unread downstream (bound {self.limit:,}: {groups})"
        if self.never_committed:
            text += f"; never committed: {', '.join(sorted(self.never_committed))} (is that stage running?)"
        return text

    def _count(self) -> int | None:
        """The records unread over every input partition; None if an answer was an error. A group
        that never committed has all of its input unread."""
        try:
            ends = {(tp.topic, tp.partition): int(f.result().offset) for tp, f in self._ends.items()}
            by_group: dict[str, int] = {}
            never: set[str] = set()
            for group, future in self._committed.items():
                partitions = future.result().topic_partitions
                if partitions and all(int(tp.offset) < 0 for tp in partitions):
                    never.add(group)
                by_group[group] = sum(
                    unread(ends.get((tp.topic, tp.partition), 0), int(tp.offset)) for tp in partitions
                )
        except KafkaException:
            return None
        self.unread_by_group, self.never_committed = by_group, frozenset(never)
        return sum(by_group.values())


def unread(end: int, committed: int) -> int:
    """Records a group has still to read of one partition: ``end`` (read-committed) less its
    ``committed`` offset (negative: none), less one for the marker that closes the last transaction.

    The stages write in transactions, each closed by a marker (a control record) that a
    read-committed consumer never gets. A stage commits its consumer's position, which steps over
    markers (``KafkaRunner._offsets_after``), but when a marker comes after the consume that
    returned its records, the stage stands one short of the end until more comes. Counted as a
    record, that marker kept one per input partition "unread", and a bound at or below that count
    (four per partition for the trigger groups) held the worker back for good once the triggers
    had caught up (5 December 2026). Leaving out the last offset is exact for a group that stood
    at the end before the last transaction; markers before the last still count (one per
    transaction, against a batch of records each); it is one too few if the writer was not
    transactional.
    """
    if committed < 0:
        return max(0, end)
    return max(0, end - committed - 1)
