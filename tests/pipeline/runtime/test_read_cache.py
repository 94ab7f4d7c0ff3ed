"""The disk store's read cache keeps to both its bounds, entries and bytes, least recently used out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.runtime.read_cache import ENTRY_OVERHEAD, ReadCache

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])
VALUES = st.one_of(st.none(), st.binary(max_size=40))
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("remember"), KEYS, st.integers(0, 2), VALUES),
        st.tuples(st.just("refresh"), KEYS, st.integers(0, 2), VALUES),
        st.tuples(st.just("touch"), KEYS),
        st.tuples(st.just("discard"), KEYS),
        st.tuples(st.just("drop"), st.frozensets(st.integers(0, 2))),
    ),
    max_size=60,
)


def cost(key: bytes, value: bytes | None) -> int:
    return ENTRY_OVERHEAD + len(key) + len(value or b"")


class Model:
    """The same cache as a list, oldest first: what each operation should leave."""

    def __init__(self, entries: int, size_max: int, value_max: int) -> None:
        self.rows: list[tuple[bytes, int, bytes | None]] = []
        self.entries, self.size_max, self.value_max = entries, size_max, value_max

    def find(self, key: bytes) -> int | None:
        return next((i for i, row in enumerate(self.rows) if row[0] == key), None)

    def apply(self, op: tuple) -> None:
        name, *args = op
        at = self.find(args[0]) if name != "drop" else None
        if name == "touch" and at is not None:
            self.rows.append(self.rows.pop(at))
        elif name == "discard" and at is not None:
            self.rows.pop(at)
        elif name == "drop":
            self.rows = [row for row in self.rows if row[1] not in args[0]]
        elif name in ("remember", "refresh"):
            self.write(name, at, *args)
        while self.rows and (
            len(self.rows) > self.entries or sum(cost(k, v) for k, _, v in self.rows) > self.size_max
        ):
            self.rows.pop(0)

    def write(self, name: str, at: int | None, key: bytes, partition: int, value: bytes | None) -> None:
        too_large = value is not None and len(value) > self.value_max
        if name == "remember":
            if at is not None:
                self.rows.pop(at)
            if not too_large:
                self.rows.append((key, partition, value))
        elif at is not None:  # refresh: in place, or out when deleted or too large
            if value is None or too_large:
                self.rows.pop(at)
            else:
                self.rows[at] = (key, partition, value)


@given(OPS, st.integers(1, 4), st.integers(ENTRY_OVERHEAD, 3 * ENTRY_OVERHEAD + 60))
def test_the_cache_holds_what_a_plain_lru_with_both_bounds_holds(
    ops: list, entries: int, size_max: int
) -> None:
    cache, model = ReadCache(entries, size_max, value_max=30), Model(entries, size_max, value_max=30)
    for op in ops:
        name, *args = op
        getattr(cache, name)(*args)
        model.apply(op)
        assert [(k, *cache[k]) for k in cache] == model.rows
        assert cache.size == sum(cost(k, v) for k, _, v in model.rows) <= size_max
        assert len(cache) <= entries


def test_growing_values_leave_fewer_entries_not_more_bytes() -> None:
    cache = ReadCache(entries=20_000, size_max=100_000, value_max=64 * 1024)
    for i in range(1_000):
        cache.remember(str(i).encode(), 0, b"x" * 3_000)
    held_small = len(cache)
    for i in range(1_000):
        cache.remember(str(i).encode(), 0, b"x" * 10_000)
    assert held_small == 31 and len(cache) == 9 and cache.size <= 100_000
