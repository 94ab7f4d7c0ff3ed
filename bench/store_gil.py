"""What a SQLite write costs a stage when other threads of its process keep the GIL busy.

    .venv/bin/python bench/store_gil.py [--rounds 6] [--rows 300] [--commits 20]

Python's sqlite3 gives up the GIL at every statement step, and a thread that gave it up waits up
to the switch interval (5 ms) to take it back while another thread computes. The worker process
runs several busy stages, so a commit of a few hundred rows written one statement per row
(``executemany``) took hundreds of milliseconds there. This times one commit of ``--rows`` new
rows of 700 bytes and as many deletes, both ways: one statement per row, and many rows per
statement (what ``pipeline.runtime.store.DiskStore`` does), alone and beside a thread that
only counts. Alternated round by round; min and median per commit.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

Rows = list[tuple[bytes, int, bytes]]
TABLE = "kv"


def per_row(db: sqlite3.Connection, upserts: Rows, deletes: list[bytes]) -> None:
    db.executemany(f"DELETE FROM {TABLE} WHERE key = ?", [(k,) for k in deletes])
    db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?)", upserts)


def many_per_statement(db: sqlite3.Connection, upserts: Rows, deletes: list[bytes], chunk: int = 300) -> None:
    for start in range(0, len(deletes), chunk):
        keys = deletes[start : start + chunk]
        db.execute(f"DELETE FROM {TABLE} WHERE key IN ({','.join('?' * len(keys))})", keys)
    for start in range(0, len(upserts), chunk):
        rows = upserts[start : start + chunk]
        values = ",".join(["(?, ?, ?)"] * len(rows))
        db.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES {values}", [v for row in rows for v in row])


def ms_per_commit(
    write: Callable[[sqlite3.Connection, Rows, list[bytes]], None], rows: int, commits: int
) -> float:
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "s.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"CREATE TABLE {TABLE} (key BLOB PRIMARY KEY, partition INTEGER, value BLOB)")
        db.execute(f"CREATE INDEX kv_partition ON {TABLE} (partition)")
        started = time.perf_counter()
        for step in range(commits):
            upserts = [(b"k%d-%d" % (step, i), 0, b"x" * 700) for i in range(rows)]
            deletes = [b"k%d-%d" % (step - 1, i) for i in range(rows)] if step else []
            db.execute("BEGIN")
            write(db, upserts, deletes)
            db.execute("COMMIT")
        db.close()
        return (time.perf_counter() - started) / commits * 1000


class BusyThread:
    """A thread that only counts: it keeps the GIL whenever it is handed it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1

    def __enter__(self) -> BusyThread:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--commits", type=int, default=20)
    args = parser.parse_args()
    ways = {"one statement per row": per_row, "many rows per statement": many_per_statement}
    for busy in (False, True):
        figures: dict[str, list[float]] = {name: [] for name in ways}
        for round_ in range(args.rounds):
            order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
            for name in order:
                if busy:
                    with BusyThread():
                        figures[name].append(ms_per_commit(ways[name], args.rows, args.commits))
                else:
                    figures[name].append(ms_per_commit(ways[name], args.rows, args.commits))
        print("beside a busy thread:" if busy else "alone:")
        for name, values in figures.items():
            print(
                f"  {name:25s} ms per commit: min {min(values):8.1f}  median {statistics.median(values):8.1f}"
            )


if __name__ == "__main__":
    main()
