"""Offsets a consumer skipped, found against what was already read and read back from the broker.

faust-streaming 0.15 can skip messages after a (re)start: its recovery resumes the
stream partitions before it seeks them to the committed offsets, the fetcher reads
ahead in between, resuming flow control then clears those buffered messages, and the
fetcher's read offset stays past them, so it drops them when they come again. Seen
here: a restarted worker read offsets 525-549, then 1014 on. A committed offset ahead
of a processor's state (set by hand, or by a bug) skips messages in the same way.

So every agent checks each batch against the offsets it expects next: the worker
against its state's partition clocks (which survive restarts), the trigger agents
against what they read since their partitions were assigned (``Expected``). The
skipped range is read directly with a plain consumer and processed first. A range
the broker no longer holds (deleted by retention or compaction, or only transaction
markers) is logged and counted as missing, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeline.errors import ProcessingError
from pipeline.runtime.messages import Incoming

log = logging.getLogger(__name__)

TopicPart = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of a partition never delivered."""

    topic: str
    partition: int
    start: int
    end: int


def find_gaps(batch: Iterable[Incoming], expected: Mapping[TopicPart, int]) -> list[Gap]:
    """Gaps between the next offsets expected per topic-partition and the messages of a batch."""
    want_next = dict(expected)
    gaps = []
    for message in batch:
        where = (message.topic, message.partition)
        want = want_next.get(where)
        if want is not None and message.offset > want:
            gaps.append(Gap(message.topic, message.partition, want, message.offset))
        if want is None or message.offset >= want:
            want_next[where] = message.offset + 1
    return gaps


def splice(batch: list[Incoming], filled: Mapping[Gap, list[Incoming]]) -> list[Incoming]:
    """The batch with each gap's messages put back in front of the message that revealed it."""
    if not filled:
        return batch
    before = {(gap.topic, gap.partition, gap.end): messages for gap, messages in filled.items()}
    out: list[Incoming] = []
    for message in batch:
        out.extend(before.pop((message.topic, message.partition, message.offset), ()))
        out.append(message)
    return out


async def fill_gaps(
    batch: list[Incoming], expected: Mapping[TopicPart, int], read: Callable[[Gap], Awaitable[list[Incoming]]]
) -> tuple[list[Incoming], dict[str, int]]:
    """The batch with every skipped message read back in place, and message counts by outcome."""
    filled: dict[Gap, list[Incoming]] = {}
    counts = {"filled": 0, "missing": 0}
    for gap in find_gaps(batch, expected):
        messages = await read(gap)
        filled[gap] = messages
        missing = gap.end - gap.start - len(messages)
        counts["filled"] += len(messages)
        counts["missing"] += missing
        log.warning(
            "consumer skipped %s[%d] offsets %d..%d: %d read back from the broker, %d no longer there",
            gap.topic, gap.partition, gap.start, gap.end - 1, len(messages), missing,
        )  # fmt: skip
    return splice(batch, filled), counts


class Expected:
    """Next offset per topic-partition, from what this process read since the partition was assigned.

    A partition new to the assignment starts without an expectation: after a rebalance another
    member may have moved its committed offset on, which is no gap.
    """

    def __init__(self) -> None:
        self.next: dict[TopicPart, int] = {}
        self.assignment: frozenset[TopicPart] = frozenset()

    def for_assignment(self, assignment: Collection[TopicPart]) -> dict[TopicPart, int]:
        current = frozenset(assignment)
        if current != self.assignment:
            self.next = {tp: o for tp, o in self.next.items() if tp in current and tp in self.assignment}
            self.assignment = current
        return self.next

    def advance(self, batch: Iterable[Incoming]) -> None:
        for message in batch:
            where = (message.topic, message.partition)
            if message.offset >= self.next.get(where, -1):
                self.next[where] = message.offset + 1


class BrokerRangeReader:
    """Reads an offset range of one partition directly (no consumer group) to fill a ``Gap``."""

    def __init__(self, bootstrap: str, stage: str, timeout_s: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.stage = stage
        self.timeout_s = timeout_s

    def read(self, gap: Gap) -> list[Incoming]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"webhouse-gap-{uuid.uuid4().hex[:8]}",  # required by the client, never joined
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            consumer.assign([TopicPartition(gap.topic, gap.partition, gap.start)])
            return self._collect(consumer, gap)
        finally:
            consumer.close()

    def _collect(self, consumer: Consumer, gap: Gap) -> list[Incoming]:
        deadline = time.monotonic() + self.timeout_s
        found: list[Incoming] = []
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return found
                raise ProcessingError(self.stage, f"reading skipped offsets {gap}: {error}")
            offset = message.offset()
            if offset is None or offset >= gap.end:
                return found
            if offset >= gap.start:
                _, timestamp = message.timestamp()
                key, value = message.key(), message.value()
                headers = tuple((str(h[0]), h[1]) for h in message.headers() or ())
                found.append(
                    Incoming(gap.topic, gap.partition, offset, key, value or b"", timestamp, headers)
                )
        raise ProcessingError(
            self.stage, f"reading skipped offsets {gap}: no answer in {self.timeout_s:.0f} s"
        )

    async def __call__(self, gap: Gap) -> list[Incoming]:
        return await asyncio.to_thread(self.read, gap)
