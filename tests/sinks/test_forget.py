"""`webhouse forget`: no row, no file, no log line of the customer or its devices is left."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.deadletter import DeadLetter
from sinks.maintenance import compact, forget, vacuum
from tests.sinks.land import Webhouse
from tools.records import T0, event, link, order, session

D = timedelta(days=1)


def _traces(root: Path, needle: str) -> list[str]:
    """Every file under the root whose bytes, or whose decoded Parquet values, contain ``needle``."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        in_bytes = needle.encode() in path.read_bytes()
        in_values = path.suffix == ".parquet" and needle in str(pq.read_table(path).to_pylist())
        if in_bytes or in_values:
            found.append(str(path))
    return found


def test_forget_removes_customer_devices_and_mentions_durably(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events(
        [
            event("k1", type="page", name="Home", path="/", anonymous_id="dev-kate", at=T0),  # anonymous
            order("k2", "ord-kate", [("p", 5.0, 2)], user_id="kate-77", anonymous_id="dev-kate", at=T0 + D),
            event("k3", name="Email Opened", user_id="kate-77", email={"campaign_name": "c"}, at=T0 + D),
            event("z1", type="page", name="Home", path="/", anonymous_id="dev-zoe", at=T0),
            order("z2", "ord-zoe", [("p", 3.0, 1)], user_id="zoe-12", anonymous_id="dev-zoe", at=T0 + D),
        ]
    )
    wh.land("sessions", [session("s-kate", "dev-kate", T0), session("s-zoe", "dev-zoe", T0)])
    wh.land("identity", [link("dev-kate", "kate-77"), link("dev-zoe", "zoe-12")])
    letter = DeadLetter("worker", "bad", "x", b'{"userId":"kate-77"}', T0, message_id="q1").to_record()
    wh.land("dead_letters", [letter])
    store = wh.store
    specs = [t.spec for t in wh.tables.values()]
    compact(store, specs)  # the customer's rows now also sit in compacted files and tombstones
    before = _traces(tmp_path, "kate-77") + _traces(tmp_path, "dev-kate")
    assert before

    removed = {f.table: f.rows for f in forget(store, specs, "kate-77")}

    assert removed == {
        "events": 3,
        "orders": 1,
        "email_interactions": 1,
        "sessions": 1,
        "identity_map": 1,
        "dead_letters": 1,
        "alerts": 0,
        "profiles_history": 0,
    }
    con = wh.connect()
    for table, column in [("events_stitched", "stitched_customer_id"), ("orders", "customer_id"),
                          ("sessions", "anonymous_id"), ("identity_map", "customer_id")]:  # fmt: skip
        hits = con.execute(
            f"SELECT count(*) FROM {table} WHERE {column} IN ('kate-77', 'dev-kate')"
        ).fetchall()
        assert hits == [(0,)], table
    assert _traces(tmp_path, "kate-77") == [] and _traces(tmp_path, "dev-kate") == []
    # Everyone else is untouched.
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(2,)]
    assert con.sql("SELECT order_id FROM orders").fetchall() == [("ord-zoe",)]
    assert vacuum(store, specs, dry_run=True)["events"] == 0  # nothing left over to collect


def test_vacuum_keeps_young_files_and_collects_what_crashed_writes_left(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path, table_retention_hours={"events": 0})
    wh.events([event("a")])
    wh.events([event("b")])  # a second small file in the same partition
    orphan = tmp_path / "events" / "event_date=2026-03-02" / "channel=web" / "part-crashed.parquet"
    orphan.write_bytes(b"half a file")
    specs = [t.spec for t in wh.tables.values() if t.name in ("events", "orders")]
    compact(wh.store, specs)
    young = Webhouse(tmp_path).store  # default retention (a week): nothing is old enough
    assert vacuum(young, specs) == {"events": 0, "orders": 0}
    assert vacuum(wh.store, specs)["events"] == 3  # two compacted-away files and the orphan
    assert not orphan.exists()
    assert wh.connect().sql("SELECT count(*) FROM events").fetchall() == [(2,)]
