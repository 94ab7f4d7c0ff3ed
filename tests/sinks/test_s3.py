"""The webhouse on an S3-compatible store (moto's S3 server: tests/sinks/conftest.py)."""

from __future__ import annotations

from pipeline.settings import Settings, WebhouseSettings
from sinks.maintenance import compact, forget, vacuum
from sinks.pii import PiiHasher
from sinks.store import DeltaStore
from sinks.tables import build_tables, default_specs
from tests.sinks.land import Webhouse
from tests.sinks.s3 import s3_bucket
from tools.records import event, order


def test_sink_store_duckdb_and_maintenance_on_s3(s3_endpoint: str) -> None:
    options = s3_bucket(s3_endpoint, "webhouse")
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
