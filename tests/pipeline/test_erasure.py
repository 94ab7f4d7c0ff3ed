"""Erasure records and the registry the stages ask: forgotten ids, and from when on they count again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.erasure import Erasure, Erasures
from pipeline.errors import SerdeError

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_a_record_reads_back_as_written() -> None:
    erasure = Erasure("ada", ("dev-b", "dev-a"), T)
    back = Erasure.from_bytes(erasure.to_bytes())
    assert back == Erasure("ada", ("dev-a", "dev-b"), T)
    assert back.ids() == {"ada", "dev-a", "dev-b"}


@pytest.mark.parametrize(
    "value",
    [
        b"{",
        b"{}",
        b'{"customer_id": "a", "anonymous_ids": [], "erased_at": "x"}',
        b'{"customer_id": "a", "anonymous_ids": [], "erased_at": "2026-11-02T09:00:00"}',
    ],
)
def test_anything_else_is_a_typed_error(value: bytes) -> None:
    with pytest.raises(SerdeError, match="not an erasure record"):
        Erasure.from_bytes(value)


def test_inputs_of_forgotten_ids_from_before_the_erasure_are_covered_later_ones_not() -> None:
    erasures = Erasures()
    assert not erasures.covers(["ada"], [0])
    erasures.apply(Erasure("ada", ("dev-a",), T))
    before, after = ms(T - timedelta(seconds=1)), ms(T + timedelta(seconds=1))
    assert erasures.covers(["dev-a", None], [before])
    assert erasures.covers([None, "ada"], [after, before])  # any time before it: a late or replayed input
    assert not erasures.covers(["ada"], [after, after])  # a returning customer counts again
    assert not erasures.covers(["bob", None], [before])  # nobody else's inputs
    assert erasures.covers(["ada"], [None])  # no time known: nothing says it is new


def test_an_id_forgotten_twice_keeps_the_later_time() -> None:
    erasures = Erasures()
    later = T + timedelta(days=1)
    erasures.apply(Erasure("ada", ("dev-a",), later))
    erasures.apply(Erasure("ada", (), T))  # an older record read after the newer one
    assert erasures.forgotten_at("ada") == ms(later) and erasures.forgotten_at("dev-a") == ms(later)
    assert len(erasures) == 2
