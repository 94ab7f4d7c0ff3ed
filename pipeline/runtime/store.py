"""A stage's state store: bytes by key, each key owned by one input partition.

The changelog topic (compacted, one partition per input partition) is the durable
copy; this is the in-memory one, rebuilt from it when a partition is assigned. It is
written only by the runtime, in the same transaction as the outputs and offsets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping


class StateStore(Mapping[bytes, bytes]):
    def __init__(self) -> None:
        self._values: dict[bytes, bytes] = {}
        self._partition_of: dict[bytes, int] = {}

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._values.pop(key, None)
            self._partition_of.pop(key, None)
            return
        self._values[key] = value
        self._partition_of[key] = partition

    def drop(self, partitions: Collection[int]) -> None:
        """Forget every key of these partitions (revoked, or about to be restored afresh)."""
        if not partitions:
            return
        gone = [key for key, p in self._partition_of.items() if p in partitions]
        for key in gone:
            del self._values[key]
            del self._partition_of[key]

    def __getitem__(self, key: bytes) -> bytes:
        return self._values[key]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values
