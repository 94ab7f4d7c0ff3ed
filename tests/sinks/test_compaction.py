"""Automatic compaction: a table is compacted once a partition gathers many small files, not before."""

from __future__ import annotations

from pathlib import Path

from sinks.maintenance import auto_compact, most_small_files
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
