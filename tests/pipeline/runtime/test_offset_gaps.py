"""Skipped offsets are found against the next offsets expected and read back in place."""

from __future__ import annotations

import asyncio

from pipeline.runtime.messages import Incoming
from pipeline.runtime.offset_gaps import Expected, Gap, fill_gaps, find_gaps, splice


def msg(partition: int, offset: int, topic: str = "raw") -> Incoming:
    return Incoming(topic, partition, offset, None, f"{partition}:{offset}".encode())


def test_no_gap_when_offsets_follow_on_or_are_replays() -> None:
    batch = [msg(0, 3), msg(0, 4), msg(1, 0), msg(0, 5)]  # 3 is a replay: below the expected 4
    assert find_gaps(batch, {("raw", 0): 4, ("raw", 1): 0}) == []


def test_a_partition_without_expectation_has_no_gap() -> None:
    assert find_gaps([msg(0, 500)], {}) == []


def test_gaps_against_the_expectation_and_inside_a_batch() -> None:
    batch = [msg(0, 7), msg(1, 2), msg(0, 8), msg(0, 12), msg(0, 30, topic="other")]
    expected = {("raw", 0): 5, ("raw", 1): 2, ("other", 0): 30}
    assert find_gaps(batch, expected) == [Gap("raw", 0, 5, 7), Gap("raw", 0, 9, 12)]


def test_splice_puts_read_back_messages_before_the_one_that_revealed_the_gap() -> None:
    batch = [msg(0, 7), msg(1, 3)]
    out = splice(batch, {Gap("raw", 0, 5, 7): [msg(0, 5), msg(0, 6)]})
    assert [(m.partition, m.offset) for m in out] == [(0, 5), (0, 6), (0, 7), (1, 3)]


def test_fill_gaps_counts_what_the_broker_no_longer_holds() -> None:
    asked: list[Gap] = []

    async def read(gap: Gap) -> list[Incoming]:
        asked.append(gap)
        return [msg(gap.partition, o) for o in range(gap.start, gap.end) if o % 2 == 0]  # odd ones gone

    batch, counts = asyncio.run(fill_gaps([msg(0, 10), msg(0, 11)], {("raw", 0): 6}, read))
    assert asked == [Gap("raw", 0, 6, 10)]
    assert [m.offset for m in batch] == [6, 8, 10, 11]
    assert counts == {"filled": 2, "missing": 2}


def test_expected_follows_reads_and_forgets_partitions_on_reassignment() -> None:
    expected = Expected()
    assert expected.for_assignment({("raw", 0), ("raw", 1)}) == {}  # nothing read yet: no claim
    expected.advance([msg(0, 4), msg(1, 9), msg(0, 2)])  # 2: a replay does not move it back
    assert expected.for_assignment({("raw", 0), ("raw", 1)}) == {("raw", 0): 5, ("raw", 1): 10}
    # Partition 1 leaves; when it comes back another member may have moved it on: no claim.
    assert expected.for_assignment({("raw", 0)}) == {("raw", 0): 5}
    assert expected.for_assignment({("raw", 0), ("raw", 1)}) == {("raw", 0): 5}
