"""Which partitions a consumer (the sink's, a stage's) has read to their end, checked against the
broker now and then.

A read-committed consumer cannot tell "caught up" from its position alone: the last offset of a
partition is often a transaction marker it steps over. So the reader trusts the end-of-partition
event, and a partition read to its end is no work waiting. But that belief is only as fresh as the
last fetch: a consumer whose fetches stopped (seen after a group coordinator's node was killed:
alive, silent, landing nothing) keeps believing it for ever, and its watchdog never sees work.

``ReadToEnd`` remembers the end offset each event reported, and every ``every_s`` asks the broker,
through an admin client of its own (a query on the consumer's connection waits behind its long-poll
fetch), for the read-committed end of those partitions. The answer is collected on a later call,
never waited for. An end that moved while no record came means the reader is behind there, until a
record or a new end event arrives; the watchdog then sees work without progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from typing import Any, Protocol

from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

TP = tuple[str, int]


class OffsetLister(Protocol):
    def list_offsets(self, topic_partition_offsets: dict[TopicPartition, OffsetSpec],
                     **kwargs: Any) -> dict[TopicPartition, Future[Any]]: ...  # fmt: skip


class ReadToEnd:
    def __init__(self, lister: OffsetLister, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.lister = lister
        self.every_s = every_s
        self.clock = clock
        self.ends: dict[TP, int] = {}  # partition -> its end offset when we read to it
        self.behind: set[TP] = set()  # read to an end that has moved since
        self._asked: dict[TopicPartition, Future[Any]] = {}
        self._next_at = clock() + every_s

    def reached(self, tp: TP, end: int) -> None:
        self.ends[tp] = end
        self.behind.discard(tp)

    def left(self, tp: TP) -> None:
        """A record arrived: the partition is being read, not at its end."""
        self.ends.pop(tp, None)
        self.behind.discard(tp)

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in list(tps):
            self.left(tp)

    def __contains__(self, tp: object) -> bool:
        return tp in self.ends and tp not in self.behind

    def probe(self) -> None:
        """Collect the answers that came; ask again when due and none is outstanding."""
        for asked, future in list(self._asked.items()):
            if not future.done():
                continue
            del self._asked[asked]
            try:
                high = future.result().offset
            except KafkaException:
                continue  # no answer this time: a broker that never answers is the stall bound's case
            tp = (asked.topic, asked.partition)
            if tp in self.ends and high > self.ends[tp]:
                self.behind.add(tp)
        now = self.clock()
        if self._asked or not self.ends or now < self._next_at:
            return
        self._next_at = now + self.every_s
        query = {TopicPartition(t, p): OffsetSpec.latest() for t, p in self.ends}
        try:
            self._asked = self.lister.list_offsets(
                query, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=max(self.every_s, 5.0)
            )
        except KafkaException:
            self._asked = {}

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for the questions still out (``settle``)."""
        settle(self._asked.values(), timeout_s)
        self._asked = {}


def settle(futures: Iterable[Future[Any]], timeout_s: float) -> None:
    """Wait until an admin client's answers are in, before its owner goes. An answer is delivered on
    one of the client's own threads; if the client itself is garbage by then, a collection run on
    that thread destroys the client from inside it, which librdkafka aborts the process for (seen
    once as a segfault at the end of a test; confluent-kafka's own tests switch collection off
    around such calls)."""
    pending = [future for future in futures if not future.done()]
    if pending:
        wait(pending, timeout=timeout_s)
