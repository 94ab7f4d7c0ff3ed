"""Automatic compaction: a table is compacted once a partition gathers many small files, not before;
the sink's own upkeep does it on its schedule and vacuums the replaced files after the retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sinks.maintenance import Upkeep, auto_compact, most_small_files
from tests.sinks.land import Webhouse
from tools.records import T0, event


def test_compacts_only_past_the_threshold(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    for i in range(5):  # five sink batches into the same day and channel: five files
        wh.events([event(f"m{i}", at=T0)])
    specs = [t.spec for t in wh.tables.values()]
    dt = wh.store.open("events")
    assert dt is not None and most_small_files(dt, 1 << 20) == 5
    assert auto_compact(wh.store, specs, min_small_files=6) == {}
    assert auto_compact(wh.store, specs, min_small_files=5) == {"events": (5, 1)}
    con = wh.connect()
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(5,)]
    dt = wh.store.open("events")
    assert dt is not None and len(dt.file_uris()) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _parquet_on_disk(root: Path) -> int:
    return sum(1 for _ in (root / "events").rglob("*.parquet"))


def test_the_sinks_upkeep_compacts_when_due_and_vacuums_after_the_retention(tmp_path: Path) -> None:
    wh = Webhouse(
        tmp_path,
        compact_every_seconds=60,
        compact_min_small_files=4,
        vacuum_every_seconds=600,
        vacuum_retention_hours=0,
    )
    for batch in range(6):  # a backfill in six batches, each over the same three days: 18 small files
        wh.events([event(f"b{batch}-d{d}", at=T0 + d * timedelta(days=1)) for d in range(3)])
    specs = [t.spec for t in wh.tables.values()]
    clock = Clock()
    upkeep = Upkeep(wh.store, specs, clock=clock)
    landed = wh.store.transaction_version("events", "test:events")

    clock.now = 59.0
    upkeep.run_due()  # not due yet
    dt = wh.store.open("events")
    assert dt is not None and len(dt.file_uris()) == 18

    clock.now = 60.0
    upkeep.run_due()
    dt = wh.store.open("events")
    assert dt is not None and len(dt.file_uris()) == 3  # one per day partition
    assert wh.store.transaction_version("events", "test:events") == landed  # the offsets stay
    assert _parquet_on_disk(tmp_path) == 21  # the replaced files wait for the vacuum

    clock.now = 600.0
    upkeep.run_due()
    assert _parquet_on_disk(tmp_path) == 3
    rows = wh.connect().sql("SELECT count(*), count(DISTINCT message_id) FROM events").fetchall()
    assert rows == [(18, 18)]


def test_upkeep_off_leaves_the_files(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path, compact_every_seconds=0, compact_min_small_files=1, vacuum_every_seconds=0)
    for batch in range(3):
        wh.events([event(f"b{batch}", at=T0)])
    clock = Clock()
    upkeep = Upkeep(wh.store, [t.spec for t in wh.tables.values()], clock=clock)
    clock.now = 1e9
    upkeep.run_due()
    assert upkeep.compact_now() == {}
    dt = wh.store.open("events")
    assert dt is not None and len(dt.file_uris()) == 3
