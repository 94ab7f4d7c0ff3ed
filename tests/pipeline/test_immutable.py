"""``@immutable`` records compare and hash as frozen dataclasses do; mypy, not the run time, keeps
them read-only (``make test`` runs it over every module before the tests)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import pytest

from pipeline.immutable import immutable


@immutable
class Point:
    x: int
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class FrozenPoint:
    x: int
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict, compare=False)


@immutable
class OwnHash:
    name: str

    def __hash__(self) -> int:
        return 7


@immutable
class OwnEquality:
    name: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OwnEquality) and other.name == self.name


def test_equal_and_hashed_by_fields_as_a_frozen_dataclass() -> None:
    a, b = Point(1, ("t",), {"n": 1}), Point(1, ("t",), {"n": 2})
    assert a == b and hash(a) == hash(b) == hash(FrozenPoint(1, ("t",), {"n": 3}))
    assert a != Point(2, ("t",))
    assert {a: "one"}[b] == "one"
    assert not hasattr(a, "__dict__")  # slotted, as the frozen records were
    assert [f.name for f in fields(Point)] == ["x", "tags", "extra"]
    assert replace(a, x=5) == Point(5, ("t",))


def test_a_class_keeps_its_own_hash_and_one_with_its_own_equality_is_still_hashable() -> None:
    assert hash(OwnHash("a")) == 7
    assert OwnEquality("a") == OwnEquality("a") != OwnEquality("b")
    assert hash(OwnEquality("a")) == hash(OwnEquality("a"))


def test_unhashable_fields_make_an_unhashable_record_as_before() -> None:
    @immutable
    class WithList:
        items: list[int]

    with pytest.raises(TypeError):
        hash(WithList([1]))
