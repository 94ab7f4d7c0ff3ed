"""The commit protocol the sinks rely on, on an S3-compatible store: deltalake 1.6 writes each
``_delta_log`` version with a conditional PUT (If-None-Match: *), so writers racing for one
version never overwrite each other (the losers re-read and take the next one), and two commits
that carry the same application transaction (one Kafka partition landed by two sinks) conflict
instead of both landing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tests.sinks.s3 import s3_bucket

WRITERS = 4
ROUNDS = 2


@pytest.mark.slow
def test_writers_racing_for_one_version_all_land(s3_endpoint: str) -> None:
    options = s3_bucket(s3_endpoint, "race")
    uri = "s3://race/t"
    write_deltalake(uri, pa.table({"writer": pa.array([-1], pa.int64())}), storage_options=options)
    for round_ in range(ROUNDS):
        at = time.time() + 2.5  # all loaded and waiting by then
        cmd = [sys.executable, "-m", "tests.sinks.race_writer", uri, json.dumps(options)]
        ids = [round_ * WRITERS + w for w in range(WRITERS)]
        procs = [subprocess.Popen([*cmd, str(i), str(at)], stdout=subprocess.PIPE, text=True) for i in ids]
        answers = [proc.communicate(timeout=60)[0].strip() for proc in procs]
        assert answers == ["ok"] * WRITERS, answers
        landed = DeltaTable(uri, storage_options=options).to_pyarrow_table()["writer"].to_pylist()
        assert set(ids) <= set(landed), f"round {round_}: commits lost {set(ids) - set(landed)}"
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == ROUNDS * WRITERS
    assert table.to_pyarrow_table().num_rows == ROUNDS * WRITERS + 1
    retries = [h["operationMetrics"].get("num_retries") for h in table.history()]
    print(f"commit race: {ROUNDS} rounds of {WRITERS} writers, retries per commit {retries}")


def test_two_commits_for_one_partition_conflict(s3_endpoint: str) -> None:
    """A sink that lost its partition but still commits (a zombie) and the new owner: same app id."""
    options = s3_bucket(s3_endpoint, "txn")
    uri = "s3://txn/t"
    write_deltalake(uri, pa.table({"id": pa.array([0])}), storage_options=options)
    zombie, owner = DeltaTable(uri, storage_options=options), DeltaTable(uri, storage_options=options)
    app = "webhouse-sink:events:raw:0"
    batch = pa.table({"id": pa.array([1, 2])})
    write_deltalake(
        owner,
        batch,
        mode="append",
        commit_properties=CommitProperties(app_transactions=[Transaction(app, 2)]),
    )
    with pytest.raises(CommitFailedError):  # DeltaStore retries it on a fresh snapshot, deduplicating
        write_deltalake(
            zombie,
            batch,
            mode="append",
            commit_properties=CommitProperties(app_transactions=[Transaction(app, 2)]),
        )
    # Other partitions' commits do not conflict: concurrent appends of other apps both land.
    other = DeltaTable(uri, storage_options=options)
    write_deltalake(owner, pa.table({"id": pa.array([3])}), mode="append")
    write_deltalake(other, pa.table({"id": pa.array([4])}), mode="append")
    assert sorted(DeltaTable(uri, storage_options=options).to_pyarrow_table()["id"].to_pylist()) == [
        0,
        1,
        2,
        3,
        4,
    ]
