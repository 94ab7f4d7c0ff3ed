"""Held inputs: parked ones (``HeldInputs.park``) come out in the same order, read back from the
``trigger-pending`` store, which holds one record per partition and step; a reset holds exactly
the inputs the stored marks have not passed."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter

import pytest

from pipeline.errors import ProcessingError
from triggers.hold import (
    ITEM_OVERHEAD,
    SHRINK,
    BatchKeys,
    Held,
    HeldInputs,
    Mark,
    batch_key,
    encode_batch,
    held_of,
    stored_inputs,
    stored_size,
)


def _inputs(n: int, seed: int, batch: bytes = b"") -> list[Held]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):  # repeats of one input (a retry) carry the same body, as the route sends them
        key = f"c-{rng.randrange(5)}"
        body = {"time": rng.randrange(10), "message_id": f"m-{rng.randrange(n)}", "anonymous_id": None}
        envelope = json.dumps({"kind": "event", "body": body, "key": key}).encode()
        out.append(held_of(key.encode(), envelope, "event", body, 0, batch))
    return out


class Pending:
    """A ``trigger-pending`` store that takes ``HeldInputs.settle``'s writes."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.writes = 0

    def apply(self, writes: list[tuple[int, bytes, bytes | None]]) -> None:
        for _, key, value in writes:
            self.writes += 1
            if value is None:
                del self.values[key]
            else:
                self.values[key] = value


NEVER: Mark = lambda partition, device: None  # noqa: E731 - no mark yet: nothing is applied


@pytest.mark.parametrize("seed", range(5))
def test_parked_inputs_come_out_in_the_same_order(seed: int) -> None:
    full, parked = HeldInputs(), HeldInputs()
    store = Pending()
    for step in range(9):
        inputs = _inputs(7, seed * 100 + step, batch_key(0, step * 7))
        for held in inputs:
            full.add(0, held)
            parked.add(0, held)
        store.apply(parked.settle([(0, h) for h in inputs], [], NEVER, store.values.get))
        assert parked.park(keep=3, mark=NEVER) > 0 and parked.in_memory == 0
    expected = list(full.release(0, False, 100, dict[bytes, bytes]().get))
    assert list(parked.release(0, False, 100, store.values.get)) == expected
    assert parked.in_memory == 0


def test_nothing_is_parked_while_few_are_held() -> None:
    """Counted are the inputs held now, not all that were ever added."""
    held = HeldInputs()
    for round_ in range(3):
        for h in _inputs(3, round_):
            held.add(0, h)
        assert held.park(keep=3, mark=NEVER) == 0
        assert len(list(held.release(0, False, 100, dict[bytes, bytes]().get))) == 3


def test_only_the_records_with_inputs_before_the_mark_come_back() -> None:
    held, store = HeldInputs(), Pending()
    early = [h._replace(at=t) for t, h in zip((1, 2, 3), _inputs(3, 1, batch_key(0, 0)), strict=True)]
    late = [h._replace(at=t) for t, h in zip((50, 60, 70), _inputs(3, 2, batch_key(0, 3)), strict=True)]
    for h in (*early, *late):
        held.add(0, h)
    store.apply(held.settle([(0, h) for h in (*early, *late)], [], NEVER, store.values.get))
    held.park(keep=0, mark=NEVER)
    assert list(held.release(0, False, 10, store.values.get)) == early
    assert held.in_memory == 0  # the late record stayed parked


def test_a_parked_record_missing_from_the_store_is_an_error() -> None:
    held = HeldInputs()
    inputs = _inputs(2, 0, batch_key(0, 1))
    for h in inputs:
        held.add(0, h)
    held.settle([(0, h) for h in inputs], [], NEVER, dict[bytes, bytes]().get)
    held.park(keep=0, mark=NEVER)
    with pytest.raises(ProcessingError, match="not stored"):
        list(held.release(0, False, 100, dict[bytes, bytes]().get))


def test_a_stored_input_reads_back_whole_in_either_format() -> None:
    """The store's values since 3 December 2026 (a header line, then the envelope as it came),
    and those written before (one JSON array) that a changelog may still hold."""
    held = _inputs(1, 0)[0]
    body = [held.at, held.rank, held.key.decode(), held.ident, held.device, held.envelope.decode()]
    earlier = json.dumps(body, separators=(",", ":")).encode()
    assert held.to_bytes().endswith(b"\n" + held.envelope)
    assert Held.from_bytes(held.to_bytes()) == held
    assert Held.from_bytes(earlier) == held
    assert Held.from_bytes(earlier).envelope == held.envelope


def test_a_record_holds_a_step_s_inputs_and_a_single_input_record_still_reads() -> None:
    inputs = _inputs(5, 1, batch_key(2, 40))
    assert stored_inputs(batch_key(2, 40), encode_batch(inputs)) == inputs
    old_key = b"2|00000000000000000003|1|c-1|m-1"  # each input under its own key, before 4 December 2026
    assert stored_inputs(old_key, inputs[0].to_bytes()) == [inputs[0]._replace(batch=old_key)]


class Stage:
    """What the evaluate stage does with its held inputs each step: read, release below a mark,
    settle the store; and a restart (``reset``) from the store and the last step's marks."""

    def __init__(self, seed: int, most: int = 6, keep: int = 10**6) -> None:
        self.rng = random.Random(seed)
        self.keep = keep  # held inputs kept in memory (``triggers.held_in_memory``)
        self.most = most  # inputs read per partition and step: fewer than this
        self.held = HeldInputs()
        self.store = Pending()
        self.mark: dict[tuple[int, bool], int | None] = {(p, d): None for p in (0, 1) for d in (False, True)}
        self.offset = 0
        self.read: list[tuple[int, Held]] = []
        self.applied: list[tuple[int, Held]] = []
        self.kept = 0

    def marks(self, partition: int, device: bool) -> int | None:
        return self.mark[(partition, device)]

    def step(self) -> None:
        taken = []
        for partition in (0, 1):
            batch = batch_key(partition, self.offset)
            for held in _inputs(self.rng.randrange(self.most), self.rng.randrange(10**6), batch):
                at = held.at + self.offset // 10  # time moves on
                held = held._replace(at=at, device=self.rng.random() < 0.3)
                taken.append((partition, held))
                self.held.add(partition, held)
            self.offset += 10
        for key, mark in self.mark.items():  # marks only move on, as the clocks' watermarks do
            if self.rng.random() < 0.5:
                self.mark[key] = (mark or 0) + self.rng.randrange(6)
        released = [
            (p, h)
            for (p, d) in sorted(self.mark)
            for h in self.held.release(p, d, self.mark[(p, d)], self.store.values.get)
        ]
        self.read += taken
        self.applied += released
        fresh = Counter(h for _, h in taken)
        fresh.subtract(h for _, h in released)
        self.kept += sum(n for n in fresh.values() if n > 0)  # read and held past this step
        self.store.apply(self.held.settle(taken, released, self.marks, self.store.values.get))
        self.held.park(self.keep, self.marks)

    def restart(self) -> None:
        self.held = HeldInputs()
        self.held.reset((0, 1), self.store.values, self.marks)


def _key(p: int, h: Held) -> tuple[int, int, int, bytes, str, bool, bytes]:
    return (p, h.at, h.rank, h.key, h.ident, h.device, h.envelope)


def _still_held(stage: Stage, key: bytes, value: bytes) -> tuple[list[Held], list[Held]]:
    """A record's inputs, and those of them the stage's marks have not passed."""
    partition = int(key.split(b"|")[0])
    inputs = stored_inputs(key, value)
    marks = [stage.marks(partition, h.device) for h in inputs]
    return inputs, [h for h, mark in zip(inputs, marks, strict=True) if mark is None or h.at >= mark]


def _held_now(stage: Stage) -> list[tuple[int, int, int, bytes, str, bool, bytes]]:
    """Every input the stage holds, in memory or parked: all released from a copy of it."""
    held = copy.deepcopy(stage.held)
    end = 2**62
    return sorted(
        _key(p, h)
        for p in (0, 1)
        for d in (False, True)
        for h in held.release(p, d, end, stage.store.values.get)
    )


@pytest.mark.parametrize("keep", [10**6, 3, 0])
@pytest.mark.parametrize("seed", range(12))
def test_restarts_keep_exactly_the_inputs_not_applied(seed: int, keep: int) -> None:
    """After any step, a restart holds what was read and not applied, whatever records hold them,
    with the inputs in memory or parked in their records (``keep``); no record outlives its
    inputs, and none keeps more than SHRINK times what it still holds."""
    stage = Stage(seed, keep=keep)
    for _ in range(40):
        stage.step()
        if stage.rng.random() < 0.3:
            stage.restart()
        expected = sorted(_key(p, h) for p, h in stage.read)
        for p, h in stage.applied:
            expected.remove(_key(p, h))
        assert _held_now(stage) == expected
        assert stage.held.in_memory <= keep
        stored = []
        for key, value in stage.store.values.items():
            inputs, held = _still_held(stage, key, value)
            assert held and (len(held) * SHRINK > len(inputs) or len(held) == len(inputs))
            stored += [_key(int(key.split(b"|")[0]), h) for h in held]
        assert sorted(stored) == expected


def test_records_are_a_few_per_step_not_one_per_input() -> None:
    """A record per input held past its step was written once and deleted once (a changelog
    record each). A record per partition and step needs far fewer."""
    stage = Stage(7, most=100)
    for _ in range(30):
        stage.step()
    assert stage.kept > 2000
    assert stage.store.writes < 2 * 2 * 30  # a record per partition and step, written and deleted


def test_a_step_s_inputs_go_to_another_record_once_one_holds_its_bytes() -> None:
    def keys() -> list[bytes]:
        records = BatchKeys(limit=1000)
        return [records.key(partition, offset, 300) for offset in range(5) for partition in (0, 1)]

    got = keys()
    # 364 bytes an input with its overhead: two to a record, per partition, named by the first.
    assert got[0::2] == [batch_key(0, 0), batch_key(0, 0), batch_key(0, 2), batch_key(0, 2), batch_key(0, 4)]
    assert got[1::2] == [batch_key(1, 0), batch_key(1, 0), batch_key(1, 2), batch_key(1, 2), batch_key(1, 4)]
    assert keys() == got  # a step redone writes the same records
    assert BatchKeys(limit=1000).key(0, 7, 5000) == batch_key(0, 7)  # one larger than a record: alone


@pytest.mark.parametrize(
    ("key", "message_id"),
    [("c-1", "m-1"), ("c-1", "x" * 400), ("kunde-ü", "nachricht-ß" * 20), ("c-😀", "😀" * 50)],
)
def test_an_input_takes_no_more_in_its_record_than_its_stored_size_and_the_overhead(
    key: str, message_id: str
) -> None:
    body = {"time": 2**62, "message_id": message_id, "anonymous_id": None}
    envelope = json.dumps({"kind": "event", "body": body}).encode()
    held = held_of(key.encode(), envelope, "event", body, 0, batch_key(0, 10**15))
    assert len(encode_batch([held])) <= stored_size(held) + ITEM_OVERHEAD
