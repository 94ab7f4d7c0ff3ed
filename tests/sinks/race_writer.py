"""One writer of the commit race (tests/sinks/test_s3_commit_race.py): load the table, wait for
the agreed instant, append one row tagged with its id; prints ok or the error."""

from __future__ import annotations

import json
import sys
import time

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def main() -> None:
    uri, options, writer, at = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    table = DeltaTable(uri, storage_options=options)
    while time.time() < at:  # a busy wait: the writers leave within microseconds of each other
        pass
    try:
        write_deltalake(table, pa.table({"writer": pa.array([writer], pa.int64())}), mode="append")
    except Exception as exc:  # reported to the test, which fails on it
        print(f"failed {type(exc).__name__}: {exc}")
        return
    print("ok")


if __name__ == "__main__":
    main()
