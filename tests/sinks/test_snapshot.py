"""A Delta snapshot as a DuckDB view: the snapshot's rows, partition values and schema, exactly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from sinks.snapshot import register_snapshot


def test_partition_values_nulls_and_added_columns(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    first = pa.table({"x": [1, 2], "day": ["2026-01-01", None], "tag": ["a b/c%", "é=x"]})
    write_deltalake(path, first, partition_by=["day", "tag"])
    later = pa.table({"x": [3], "day": ["2026-01-02"], "tag": ["a"], "new": pa.array([7], pa.int32())})
    write_deltalake(path, later, mode="append", partition_by=["day", "tag"], schema_mode="merge")
    con = duckdb.connect()
    register_snapshot(con, "t", DeltaTable(path))
    assert con.sql("DESCRIBE t").fetchall()[:4] == [
        ("x", "BIGINT", "YES", None, None, None),
        ("day", "VARCHAR", "YES", None, None, None),
        ("tag", "VARCHAR", "YES", None, None, None),
        ("new", "INTEGER", "YES", None, None, None),
    ]
    assert con.sql("SELECT x, day, tag, new FROM t ORDER BY x").fetchall() == [
        (1, "2026-01-01", "a b/c%", None),
        (2, None, "é=x", None),
        (3, "2026-01-02", "a", 7),
    ]


def test_removed_files_are_not_read(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"x": [1]}))
    write_deltalake(path, pa.table({"x": [2]}), mode="overwrite")
    con = duckdb.connect()
    register_snapshot(con, "t", DeltaTable(path))
    assert con.sql("SELECT x FROM t").fetchall() == [(2,)]
    assert len(list(Path(path).glob("*.parquet"))) == 2
