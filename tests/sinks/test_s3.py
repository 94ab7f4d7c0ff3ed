"""The webhouse on an S3-compatible store (moto's S3 server, a separate process: deltalake holds
the GIL during its I/O, so an in-process server would deadlock)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest

from pipeline.settings import Settings, WebhouseSettings
from sinks.maintenance import compact, forget, vacuum
from sinks.pii import PiiHasher
from sinks.store import DeltaStore
from sinks.tables import build_tables, default_specs
from tests.sinks.land import Webhouse
from tools.records import event, order


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def test_sink_store_duckdb_and_maintenance_on_s3(s3_endpoint: str) -> None:
    keys = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=s3_endpoint, **keys).create_bucket(Bucket="webhouse")
    options = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "conditional_put": "etag",  # safe concurrent commits without a lock table
    }
    wh = Webhouse.__new__(Webhouse)
    wh.settings = Settings(webhouse=WebhouseSettings(root="s3://webhouse/tables", storage_options=options))
    wh.store = DeltaStore(wh.settings.webhouse)
    wh.tables = {t.name: t for t in build_tables(PiiHasher("k"), default_specs("raw"))}
    wh._offset = 0

    wh.events([event("m1"), order("m2", "o", [("p", 1.0, 2)], user_id="u")])
    wh.events([event("m1"), event("m3")])  # m1 again: dropped
    con = wh.connect()
    assert con.sql("SELECT message_id FROM events ORDER BY 1").fetchall() == [("m1",), ("m2",), ("m3",)]
    assert con.sql("SELECT sum(amount) FROM orders").fetchall() == [(2.0,)]
    specs = [t.spec for t in wh.tables.values()]
    assert compact(wh.store, specs)["events"] == (2, 1)
    removed = {f.table: f.rows for f in forget(wh.store, specs, "u") if f.rows}
    assert removed == {"events": 1, "orders": 1}
    assert vacuum(wh.store, specs, dry_run=True)["events"] == 0
    assert wh.connect().sql("SELECT count(*) FROM events").fetchall() == [(2,)]
