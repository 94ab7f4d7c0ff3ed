"""The disk store's read cache: committed rows by key, the least recently used out first.

Bounded by entries and by bytes. A count alone bounds nothing when values grow: a customer's
trigger state grows as the customer comes back (in the bench's replay cycles, 2-3 KB on average at
first and about 6 KB after four cycles, the largest 16 KB; before the ids kept against replays were
fingerprinted, 11 and 23 KB), so the memory of 20,000 cached states grew with it
(docs/performance.md, "The triggers' state over replay cycles").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping

Row = tuple[int, bytes | None]  # (partition, value); value None: the key is known to be absent
# What an entry costs besides its key's and value's bytes (CPython 3.11, 64-bit): the tuple and
# the ordered dict's slot, 130 bytes by tracemalloc, and the two bytes objects' headers, 33 each.
ENTRY_OVERHEAD = 200


def _cost(key: bytes, value: bytes | None) -> int:
    return ENTRY_OVERHEAD + len(key) + (len(value) if value is not None else 0)


class ReadCache(Mapping[bytes, Row]):
    """At most ``entries`` rows and ``size_max`` bytes (``size``: keys, values and overhead);
    values over ``value_max`` are never cached."""

    def __init__(self, entries: int, size_max: int, value_max: int) -> None:
        self._rows: OrderedDict[bytes, Row] = OrderedDict()
        self.entries = entries
        self.size_max = size_max
        self.value_max = value_max
        self.size = 0

    def __getitem__(self, key: bytes) -> Row:
        return self._rows[key]

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def touch(self, key: bytes) -> Row | None:
        """The row, now the most recently used; None if not cached."""
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
        return row

    def remember(self, key: bytes, partition: int, value: bytes | None) -> None:
        """A row read from the table (``value`` None: the key is not there), most recently used."""
        self.discard(key)
        if value is not None and len(value) > self.value_max:
            return
        self._rows[key] = (partition, value)
        self.size += _cost(key, value)
        self._evict()

    def refresh(self, key: bytes, partition: int, value: bytes | None) -> None:
        """A committed write: a cached key takes its new value, in its place, or leaves the cache
        (deleted, or too large to cache); a key not cached stays out."""
        old = self._rows.get(key)
        if old is None:
            return
        if value is None or len(value) > self.value_max:
            self.discard(key)
            return
        self._rows[key] = (partition, value)
        self.size += _cost(key, value) - _cost(key, old[1])
        self._evict()

    def discard(self, key: bytes) -> None:
        old = self._rows.pop(key, None)
        if old is not None:
            self.size -= _cost(key, old[1])

    def drop(self, partitions: Collection[int]) -> None:
        """Every row of these partitions goes."""
        if self._rows:
            self._rows = OrderedDict((k, row) for k, row in self._rows.items() if row[0] not in partitions)
            self.size = sum(_cost(k, row[1]) for k, row in self._rows.items())

    def _evict(self) -> None:
        while self._rows and (len(self._rows) > self.entries or self.size > self.size_max):
            key, (_, value) = self._rows.popitem(last=False)
            self.size -= _cost(key, value)
