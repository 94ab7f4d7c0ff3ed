"""Flattening, PII hashing, order lines, dedupe and schema evolution, on hand-made records."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.serde import default_catalog
from sinks.pii import PiiHasher
from sinks.rows import order_lines
from sinks.store import _key, anti_join, dedupe_batch
from sinks.tables import Table, TableSpec, default_specs
from tests.sinks.land import SECRET, Webhouse
from tools.records import T0, event, order


def _events_table(schema: dict | None = None) -> Table:
    spec = next(s for s in default_specs("raw") if s.name == "events")
    if schema is not None:
        spec = TableSpec(**{**{f: getattr(spec, f) for f in spec.__slots__}, "schema": schema})
    return Table(spec, PiiHasher(SECRET))


def test_flatten_makes_analyst_columns_and_hashes_identifiers() -> None:
    record = event(
        "m1",
        type="page",
        name="Home",
        path="/home",
        ip="203.0.113.9",
        traits={"email": " Ann@Example.com ", "phone": "+44 20 7946 0000", "extra": {}},
        properties={"colour": '"red"'},
        session_id="s1",
        customer_id="c1",
    )
    (row,) = _events_table().rows(record)
    assert row["context_page_path"] == "/home" and row["page_path"] == "/home"
    assert row["customer_id"] == "c1" and row["session_id"] == "s1" and row["event_date"] == "2026-03-02"
    assert row["properties"] == [("colour", '"red"')]
    hasher = PiiHasher(SECRET)
    assert row["traits_email_hmac"] == hasher.hash("email", "ann@example.com")
    assert row["context_ip_hmac"] == hasher.hash("ip", "203.0.113.9")
    assert "traits_email" not in row and "context_ip" not in row
    clear = {"Ann@Example.com", "203.0.113.9", "+44 20 7946 0000"}
    assert not any(str(v).strip() in clear for v in row.values())
    assert PiiHasher("other").hash("email", "ann@example.com") != row["traits_email_hmac"]


def test_dead_letter_payloads_lose_identifiers() -> None:
    out = PiiHasher(SECRET).redact_bytes(b'{"email":"bob@x.org","ip":"10.1.2.3","phone":"+1 555 123 4567"}')
    assert b"bob@x.org" not in out and b"10.1.2.3" not in out and b"555 123" not in out
    assert out.startswith(b'{"email":"<email:')


def test_order_lines_one_per_product_refunds_negative() -> None:
    hasher = PiiHasher(SECRET)
    lines = order_lines(order("m1", "o1", [("p1", 2.5, 2), ("p2", 1.0, 3)], user_id="u1"), hasher)
    assert [(r["line_no"], r["quantity"], r["amount"]) for r in lines] == [(1, 2, 5.0), (2, 3, 3.0)]
    refund = order_lines(order("m2", "o1", [("p1", 2.5, 2)], refund=True), hasher)
    assert [(r["kind"], r["quantity"], r["amount"]) for r in refund] == [("refunded", -2, -5.0)]
    bare = event("m3", name="Order Completed", commerce={"order_id": "o3", "revenue": 9.0})
    assert [(r["line_no"], r["amount"]) for r in order_lines(bare, hasher)] == [(0, 9.0)]
    assert order_lines(event("m4", name="Product Viewed"), hasher) == []


def test_dedupe_within_batch_and_against_table(tmp_path: Path) -> None:
    data = pa.table({"id": ["a", "b", "a", "c"], "v": [1, 2, 3, 4]})
    assert dedupe_batch(data, ("id",)).to_pydict() == {"id": ["a", "b", "c"], "v": [1, 2, 4]}
    assert anti_join(data, pa.table({"id": ["a"]}), ("id",))["v"].to_pylist() == [2, 4]
    wh = Webhouse(tmp_path)
    batch = [order("m1", "o1", [("p", 1.0, 1)]), order("m1", "o1", [("p", 1.0, 1)]), event("m2")]
    first = {r.table: r for r in wh.land("raw_events", batch)}
    assert (first["events"].rows, first["events"].duplicates) == (2, 1)
    again = {r.table: r for r in wh.land("raw_events", [*batch, event("m3")])}
    assert (again["events"].rows, again["events"].duplicates) == (1, 3)
    assert (again["orders"].rows, again["orders"].duplicates) == (0, 2)
    assert DeltaTable(str(tmp_path / "events")).transaction_version("test:events") == 7


def test_new_optional_field_becomes_a_nullable_column_without_rewriting(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events([event("m1")])
    files_before = set(DeltaTable(str(tmp_path / "events")).file_uris())
    v2 = copy.deepcopy(default_catalog().get("customer_event").raw)
    v2["fields"].append({"name": "loyalty_tier", "type": ["null", "string"], "default": None})
    table = _events_table(v2)
    newer = event("m2", at=T0 + timedelta(minutes=1))
    wh.land_rows(table, table.rows({**newer, "loyalty_tier": "gold"}))
    dt = DeltaTable(str(tmp_path / "events"))
    assert files_before <= set(dt.file_uris())  # old files untouched, still in the snapshot
    field = dt.schema().to_arrow().field("loyalty_tier")
    assert field.nullable
    rows = wh.connect().sql("SELECT message_id, loyalty_tier FROM events ORDER BY 1").fetchall()
    assert rows == [("m1", None), ("m2", "gold")]


def test_columnar_batch_equals_the_row_by_row_reference() -> None:
    from pipeline.deadletter import DeadLetter
    from tools.records import link, session

    records = [
        event(
            "m1", type="page", name="Home", path="/", ip="192.0.2.1", traits={"email": "a@b.c", "extra": {}}
        ),
        order("m2", "o2", [("p1", 2.0, 1), ("p2", 3.5, 2)], user_id="u2", session_id="s", customer_id="u2"),
        event("m3", name="Email Opened", email={"campaign_name": "c"}, properties={"k": '"v"'}),
        order("m4", "o4", [], refund=True),
    ]
    hasher = PiiHasher(SECRET)
    for spec in default_specs("raw"):
        table = Table(spec, hasher)
        if spec.source == "raw_events":
            batch = records
        elif spec.source == "sessions":
            batch = [session("s1", "a", T0), session("s2", "b", T0, merged_session_ids=["s0"])]
        elif spec.source == "identity":
            batch = [link("a", "c"), link("b", "c")]
        elif spec.source == "dead_letters":
            batch = [DeadLetter("sink", "bad", "d", b"x@y.org", T0, message_id="m").to_record()]
        else:
            continue
        reference = table.to_arrow([row for r in batch for row in table.rows(r)])
        columnar = table.batch(batch, [table.derive(r) for r in batch])
        assert columnar.equals(reference), spec.name


def test_a_late_commit_never_moves_a_partitions_offset_back(tmp_path: Path) -> None:
    """Two sinks landed one partition (the old owner stalled past its session timeout): the late
    commit of the old owner keeps the new owner's offset, and its rows are already there."""
    wh = Webhouse(tmp_path)
    table = wh.tables["events"]
    app = "webhouse-sink:events:raw:0"
    rows = [row for m in ("m1", "m2", "m3") for row in table.rows(event(m))]
    wh.store.append(table, table.to_arrow(rows), {app: 30, "webhouse-sink:events:raw:1": 4})
    late = wh.store.append(table, table.to_arrow(rows[:2]), {app: 20, "webhouse-sink:events:raw:1": 9})
    assert (late.rows, late.duplicates) == (0, 2)
    landed = DeltaTable(str(tmp_path / "events"))
    assert landed.transaction_version(app) == 30  # not 20
    assert landed.transaction_version("webhouse-sink:events:raw:1") == 9  # this one did advance


_ID = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "", "a\x1fb", "é"]))


@settings(max_examples=300, deadline=None)
@given(
    batch=st.lists(st.tuples(_ID, _ID), max_size=12),
    existing=st.lists(st.tuples(_ID, _ID), max_size=12),
    columns=st.sampled_from([("id",), ("id", "other")]),
)
def test_anti_join_drops_exactly_the_rows_whose_id_the_table_holds(
    batch: list[tuple[str | None, str | None]],
    existing: list[tuple[str | None, str | None]],
    columns: tuple[str, ...],
) -> None:
    """``anti_join`` hashes the batch's ids and probes the table's (the large side) against them;
    it keeps the same rows, in the same order, as looking each batch id up in the table's ids."""
    ids = pa.schema([("id", pa.string()), ("other", pa.string())])
    data = pa.table(
        {"id": [b[0] for b in batch], "other": [b[1] for b in batch], "row": list(range(len(batch)))},
        schema=ids.append(pa.field("row", pa.int64())),
    )
    held = pa.table({"id": [e[0] for e in existing], "other": [e[1] for e in existing]}, schema=ids)
    if held.num_rows and data.num_rows:
        dropped = pc.is_in(_key(data, columns), value_set=_key(held, columns))
        expected = data.filter(pc.invert(dropped))
    else:
        expected = data
    assert anti_join(data, held, columns).to_pydict() == expected.to_pydict()
