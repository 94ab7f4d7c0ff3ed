"""A stage's state stores: bytes by key, each key owned by one input partition.

The changelog topic (compacted, one partition per input partition) is the durable copy.
Two local copies, both written only by the runtime, in the same transaction as the
outputs and offsets:

- ``StateStore``: in memory, rebuilt from the whole changelog when a partition is assigned
  (``worker.state_store: memory``, and the broker-less runtime of the tests).
- ``DiskStore``: SQLite files under ``worker.data_dir`` (the default). A write is pending until
  the Kafka transaction that carried it committed; then it lands together with the changelog
  offset it reached (``commit``), in one SQLite transaction. So the file always equals the
  changelog up to its saved offset, and an assignment reads only the changelog's tail from there
  (``resume_offset``), whoever wrote it meanwhile. State can outgrow memory: only pending
  writes live in it.

SQLite (the standard library's) rather than RocksDB (faust's binding, last released in 2023, or
rocksdict): a key-value table with an index by partition, and transactions covering rows and
offsets together, are all this needs, without a native dependency.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path

from pipeline.errors import ProcessingError
from pipeline.runtime.read_cache import ReadCache


class StateStore(Mapping[bytes, bytes]):
    """In memory: every key of the owned partitions; writes apply at once."""

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

    # The runtime's side of a local copy that survives the process (``DiskStore``): none here.
    def resume_offset(self, partition: int, source: str) -> int | None:
        return None

    def forget(self, partition: int) -> None:
        """Nothing saved to forget: ``drop`` did it."""

    def restored(self, partition: int, source: str, next_offset: int) -> None:
        """The changelog partition was read up to ``next_offset``."""

    def commit(self, positions: Mapping[int, int], source: str) -> None:
        """The transaction holding the writes since the last commit is committed."""

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


class StateFiles:
    """One stage's SQLite file, in the first free slot of its directory.

    A slot is held by an exclusive lock (released by the kernel however the process dies), so
    processes of the same stage on one host never share a file, and a restarted one takes up a
    file whose partitions it can resume. Whatever a file holds is valid as of its saved offsets.
    """

    def __init__(self, directory: Path, slots: int = 64) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for slot in range(slots):
            lock = os.open(directory / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                continue
            self.lock = lock
            self.path = directory / f"slot-{slot}.sqlite"
            break
        else:
            raise ProcessingError("state", f"all {slots} state slots under {directory} are in use")
        # One runner thread uses it, but it is opened by the thread that builds the runner.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a power cut may lose the last commits: replayed
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS positions (store TEXT, partition INTEGER, source TEXT, "
            "next_offset INTEGER, PRIMARY KEY (store, partition))"
        )

    def store(self, name: str) -> DiskStore:
        return DiskStore(self.db, name)

    def close(self) -> None:
        self.db.close()
        os.close(self.lock)


READ_CACHE_ENTRIES = 20_000  # per store; a trigger state is 2-16 KB of JSON, a device record ~1 KB
READ_CACHE_BYTES = 64 * 2**20  # per store: 20,000 entries of 3 KB (a first pass of a replay) fit
# Larger values are not cached: a record of a step's held inputs (``triggers.hold``) can be megabytes,
# is read once per step at most, and 20,000 of them would not fit in memory.
READ_CACHE_VALUE_MAX = 64 * 1024
ABSENT = -1  # the read cache's partition of a key the table does not hold
ROWS_PER_STATEMENT = 300  # 900 parameters: under SQLite's oldest limit (999)


class DiskStore(Mapping[bytes, bytes]):
    """A store in a SQLite table: the owned partitions' committed rows, under the pending writes.

    ``source`` names the changelog a partition's rows follow (cluster id and topic): rows saved
    from another cluster or topic are thrown away rather than resumed.

    Rows read, and keys found absent, are kept in a read cache bounded by entries and bytes
    (``pipeline.runtime.read_cache``: least recently used out),
    updated by each commit and emptied of a partition's rows (and of every absent key, whose
    partition is not known) whenever a partition is dropped, forgotten or restored, so it only
    ever holds what the table holds. The evaluate stage reads a customer's state at each of its
    steps, and each SQLite lookup gives up the GIL: in a process of several busy stages, taking
    it back made the lookups an eighth of that stage's time (issue 11)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        name: str,
        cache_entries: int = READ_CACHE_ENTRIES,
        cache_bytes: int = READ_CACHE_BYTES,
    ) -> None:
        self.db = db
        self.name = name
        self.table = f'"kv_{name}"'
        # A rowid table: with values of a kilobyte, a WITHOUT ROWID one was 3x larger and slower.
        columns = "key BLOB PRIMARY KEY, partition INTEGER, value BLOB"
        db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})")
        db.execute(f'CREATE INDEX IF NOT EXISTS "kv_{name}_partition" ON {self.table} (partition)')
        self.owned: set[int] = set()
        self.incoming: set[int] = set()  # partitions being restored (between resume_offset and restored)
        self.pending: dict[bytes, tuple[int, bytes | None]] = {}
        self.restoring: dict[bytes, tuple[int, bytes | None]] = {}
        # Committed rows read: key -> (partition, value), or (ABSENT, None) for a key not there.
        self.cache = ReadCache(cache_entries, cache_bytes, READ_CACHE_VALUE_MAX)

    # -- the runtime's side --------------------------------------------------------------

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """A write of the open transaction, or a changelog record being restored."""
        if partition not in self.incoming:
            self.pending[key] = (partition, value)
            return
        self.restoring[key] = (partition, value)
        if len(self.restoring) >= 10_000:
            self._flush_restoring()

    def drop(self, partitions: Collection[int]) -> None:
        """Not owned any more: pending writes go, the rows stay with their offsets (resumed later)."""
        if not partitions:
            return
        self.owned -= set(partitions)
        self.incoming -= set(partitions)
        self.pending = {k: pv for k, pv in self.pending.items() if pv[0] not in partitions}
        self._uncache(partitions)

    def resume_offset(self, partition: int, source: str) -> int | None:
        """Where to read this partition's changelog from: the saved offset, or None (from the start;
        rows of another source are deleted). The runtime checks it is inside the log."""
        self.incoming.add(partition)
        self._uncache({partition})
        row = self.db.execute(
            "SELECT source, next_offset FROM positions WHERE store = ? AND partition = ?",
            (self.name, partition),
        ).fetchone()
        if row is not None and row[0] == source:
            return int(row[1])
        self.forget(partition)
        return None

    def forget(self, partition: int) -> None:
        """Rows and offset of a partition, gone (before reading its changelog from the start)."""
        self._uncache({partition})
        self.db.execute("BEGIN")
        self.db.execute(f"DELETE FROM {self.table} WHERE partition = ?", (partition,))
        self.db.execute("DELETE FROM positions WHERE store = ? AND partition = ?", (self.name, partition))
        self.db.execute("COMMIT")

    def restored(self, partition: int, source: str, next_offset: int) -> None:
        """The changelog partition was read up to ``next_offset``: it is owned from now on."""
        self._flush_restoring()
        self._save_position(partition, source, next_offset)
        self.incoming.discard(partition)
        self.owned.add(partition)

    def commit(self, positions: Mapping[int, int], source: str) -> None:
        """The Kafka transaction carrying the pending writes committed; ``positions``: per partition,
        the changelog offset after its last record. Both land in one SQLite transaction."""
        if not self.pending and not positions:
            return
        writes = self.pending
        self.pending = {}
        self.db.execute("BEGIN")
        self._write((key, partition, value) for key, (partition, value) in writes.items())
        for partition, offset in positions.items():
            self._save_position(partition, source, offset)
        self.db.execute("COMMIT")
        for key, (partition, value) in writes.items():
            self.cache.refresh(key, partition, value)

    def _save_position(self, partition: int, source: str, offset: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)", (self.name, partition, source, offset)
        )

    def _uncache(self, partitions: Collection[int]) -> None:
        self.cache.drop({*partitions, ABSENT})

    def _flush_restoring(self) -> None:
        if not self.restoring:
            return
        rows, self.restoring = self.restoring, {}
        for key in rows:
            self.cache.discard(key)
        self.db.execute("BEGIN")
        self._write((key, partition, value) for key, (partition, value) in rows.items())
        self.db.execute("COMMIT")

    def _write(self, rows: Iterator[tuple[bytes, int, bytes | None]]) -> None:
        upserts: list[tuple[bytes, int, bytes]] = []
        deletes: list[tuple[bytes]] = []
        for key, partition, value in rows:
            if value is None:
                deletes.append((key,))
            else:
                upserts.append((key, partition, value))
        # Deletes first is right: a key appears once in a batch of writes (the latest write won).
        # Many rows per statement: SQLite gives up the GIL at each statement step, and taking it
        # back in a process of busy stages cost far more than the row (issue 11).
        for start in range(0, len(deletes), ROWS_PER_STATEMENT):
            keys = [key for (key,) in deletes[start : start + ROWS_PER_STATEMENT]]
            self.db.execute(f"DELETE FROM {self.table} WHERE key IN ({','.join('?' * len(keys))})", keys)
        for start in range(0, len(upserts), ROWS_PER_STATEMENT):
            chunk = upserts[start : start + ROWS_PER_STATEMENT]
            values = ",".join(["(?, ?, ?)"] * len(chunk))
            self.db.execute(
                f"INSERT OR REPLACE INTO {self.table} VALUES {values}", [v for row in chunk for v in row]
            )

    # -- the stage's side (read-only) ----------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        pending = self.pending.get(key)
        if pending is not None:
            return pending[1] if pending[1] is not None else default
        cached = self.cache.touch(key)
        if cached is not None:
            return cached[1] if cached[1] is not None else default
        row = self.db.execute(f"SELECT partition, value FROM {self.table} WHERE key = ?", (key,)).fetchone()
        if row is not None and row[0] not in self.owned:
            return default
        value = None if row is None else bytes(row[1])
        self.cache.remember(key, row[0] if row is not None else ABSENT, value)
        return value if value is not None else default

    def prefetch(self, keys: Iterable[bytes]) -> None:
        """Read these keys into the cache, many per query (the GIL given up once, not per key)."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self.pending and k not in self.cache]
        for start in range(0, len(wanted), ROWS_PER_STATEMENT):
            chunk = wanted[start : start + ROWS_PER_STATEMENT]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, partition, value FROM {self.table} WHERE key IN ({marks})"
            rows = self.db.execute(query, chunk)
            found = {bytes(key): (partition, value) for key, partition, value in rows}
            for key in chunk:
                row = found.get(key)
                if row is None:
                    self.cache.remember(key, ABSENT, None)
                elif row[0] in self.owned:
                    self.cache.remember(key, row[0], bytes(row[1]))

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def items(self) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[override]
        """The owned partitions' rows, one partition at a time (a scan, not a load)."""
        return self._scan("key, value")

    def __iter__(self) -> Iterator[bytes]:
        """The owned partitions' keys, without reading their values."""
        return (key for key, _ in self._scan("key, NULL"))

    def _scan(self, columns: str) -> Iterator[tuple[bytes, bytes]]:
        for partition in sorted(self.owned):
            cursor = self.db.execute(f"SELECT {columns} FROM {self.table} WHERE partition = ?", (partition,))
            for key, value in cursor:
                if key not in self.pending:
                    yield bytes(key), value
        for key, (_, pending) in list(self.pending.items()):
            if pending is not None:
                yield key, pending

    def __len__(self) -> int:
        """Committed rows of the owned partitions (pending writes not counted)."""
        if not self.owned:
            return 0
        marks = ",".join("?" * len(self.owned))
        row = self.db.execute(
            f"SELECT count(*) FROM {self.table} WHERE partition IN ({marks})", tuple(self.owned)
        )
        return int(row.fetchone()[0])


def prefetch(store: Mapping[bytes, bytes], keys: Iterable[bytes]) -> None:
    """What a stage about to read these keys may ask of its store (a ``DiskStore`` reads them at
    once; in memory there is nothing to do)."""
    if isinstance(store, DiskStore):
        store.prefetch(keys)


Bounds = Mapping[int, tuple[int, int]]  # partition -> (first, end) offsets of its changelog
Reader = Callable[[Mapping[int, int]], Iterable[tuple[int, bytes, bytes | None]]]  # from offsets


def restore(store: StateStore | DiskStore, source: str, bounds: Bounds, read: Reader) -> None:
    """A store's changelog partitions, from where its local copy stands (a ``DiskStore``'s saved
    offset, if still inside the log) or else from the start, to the end. ``read`` gives the
    records from the offsets it is handed (a broker's changelog, or the in-memory runtime's)."""
    starts: dict[int, int] = {}
    for partition, (low, high) in bounds.items():
        saved = store.resume_offset(partition, source)
        if saved is not None and not low <= saved <= high:  # another log of the same name
            store.forget(partition)
            saved = None
        starts[partition] = low if saved is None else saved
    for partition, key, value in read(starts):
        store.put(partition, key, value)
    for partition, (_, high) in bounds.items():
        store.restored(partition, source, max(high, starts[partition]))
