"""Table snapshots: wall-clock columns do not count, copies do, differences come with samples."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from tools.chaos.compare import diff, snapshot


def _events(root: Path, rows: list[tuple[str, str, datetime]]) -> None:
    data = pa.table(
        {
            "message_id": [r[0] for r in rows],
            "event": [r[1] for r in rows],
            "received_at": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )
    write_deltalake(str(root / "events"), data, mode="append")


def test_runs_that_differ_only_in_wall_clock_are_equal(tmp_path: Path) -> None:
    _events(tmp_path / "a", [("m1", "Viewed", datetime(2026, 1, 1, tzinfo=UTC))])
    _events(tmp_path / "b", [("m1", "Viewed", datetime(2026, 6, 1, tzinfo=UTC))])
    a = snapshot(tmp_path / "a", "events", ("message_id",))
    b = snapshot(tmp_path / "b", "events", ("message_id",))
    assert diff(a, b) is None


def test_a_lost_row_a_changed_row_and_a_copy_are_differences(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    _events(tmp_path / "a", [("m1", "Viewed", now), ("m2", "Added", now), ("m3", "Paid", now)])
    _events(tmp_path / "b", [("m1", "Viewed", now), ("m1", "Viewed", now), ("m2", "Removed", now)])
    a = snapshot(tmp_path / "a", "events", ("message_id",))
    b = snapshot(tmp_path / "b", "events", ("message_id",))
    assert (a.duplicated, b.duplicated) == (0, 1)
    found = diff(a, b)
    assert found is not None
    assert (found.baseline_rows, found.chaos_rows, found.only_baseline, found.only_chaos) == (3, 3, 2, 2)
    assert {r["message_id"] for r in found.samples_baseline} == {"m2", "m3"}
    assert [(r["message_id"], r["event"]) for r in found.samples_chaos] == [
        ("m2", "Removed"),
        ("m1", "Viewed"),
    ]


def test_a_missing_table_is_an_empty_one(tmp_path: Path) -> None:
    empty = snapshot(tmp_path, "alerts", ("alert_id",))
    assert empty.count == 0 and empty.duplicated == 0
