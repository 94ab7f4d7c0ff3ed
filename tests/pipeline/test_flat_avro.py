"""``FlatWriter`` writes exactly fastavro's bytes, or declines (None) and leaves the record to it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import SerdeError
from pipeline.flat_avro import FlatWriter, zigzag_varint
from pipeline.serde import SingleObjectSerde, default_catalog

_RAW = default_catalog().get("customer_event").raw
ENRICHMENT = next(t for t in _RAW["fields"][-1]["type"] if isinstance(t, dict))
SCHEMA = {**ENRICHMENT, "namespace": _RAW.get("namespace")}
PARSED = fastavro.parse_schema(SCHEMA)
WRITER = FlatWriter.compile(SCHEMA)

_LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TIMES = st.one_of(
    _LONGS,
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
    ),
)


def _fastavro(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, record)
    return buf.getvalue()


def _value(field: dict[str, Any]) -> st.SearchStrategy[Any]:
    avro_type = field["type"]
    optional = isinstance(avro_type, list)
    inner = avro_type[1] if optional else avro_type
    if inner == "string":
        values: st.SearchStrategy[Any] = st.text()
    elif inner == "boolean":
        values = st.booleans()
    elif inner == "long":
        values = _LONGS
    else:
        values = _TIMES
    return st.one_of(st.none(), values) if optional else values


RECORDS = st.fixed_dictionaries({f["name"]: _value(f) for f in ENRICHMENT["fields"]})


def test_the_enrichment_record_is_flat() -> None:
    assert WRITER is not None
    assert [name for name, _, _ in WRITER.fields] == [f["name"] for f in ENRICHMENT["fields"]]


@settings(max_examples=300, deadline=None)
@given(RECORDS)
def test_writes_fastavros_bytes(record: dict[str, Any]) -> None:
    assert WRITER is not None
    assert WRITER.write(record) == _fastavro(record)  # st.text() makes no lone surrogates


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("is_bot", 1),  # not a bool: fastavro's own coercion decides
        ("is_bot", None),  # a required field missing
        ("event_time", None),
        ("event_time", datetime(2026, 1, 1)),  # naive
        ("event_time", 2**63),  # out of a long's range
        ("event_time", 1.5),
        ("customer_id", b"bytes"),
        ("customer_id", 7),
        ("clock_skew_ms", True),
        ("session_id", "\ud800"),  # a lone surrogate
    ],
)
def test_declines_what_it_cannot_write_exactly(field: str, value: Any) -> None:
    assert WRITER is not None
    record = {"event_time": 0, "is_bot": False, "is_late": False, field: value}
    assert WRITER.write(record) is None


def _one_field(avro_type: Any) -> dict[str, Any]:
    return {"type": "record", "name": "R", "fields": [{"name": "x", "type": avro_type}]}


@pytest.mark.parametrize(
    "schema",
    [
        _one_field("double"),
        _one_field(["string", "null"]),
        _one_field(["null", "string", "long"]),
        _one_field({"type": "array", "items": "long"}),
        _one_field({"type": "long", "logicalType": "timestamp-micros"}),
        {"type": "enum", "name": "E", "symbols": ["A"]},
    ],
)
def test_other_schemas_are_not_flat(schema: dict[str, Any]) -> None:
    assert FlatWriter.compile(schema) is None


@given(_LONGS)
def test_zigzag_varint_is_avros_long(n: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert zigzag_varint(n) == buf.getvalue()


LINK = {
    "anonymous_id": "anon-1",
    "customer_id": "cust-ä",
    "first_seen": datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
    "last_seen": 1_780_000_000_000,
    "source_event_id": "m-1",
    "source_type": "identify",
}


def test_a_flat_schemas_serde_writes_fastavros_bytes_and_keeps_its_errors() -> None:
    """identity_link is flat: ``SingleObjectSerde`` writes it with ``FlatWriter``, and still
    refuses, through fastavro, a record with a key the schema lacks or without a required field."""
    serde = SingleObjectSerde("identity_link")
    assert serde._flat is not None
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, serde.schema.parsed, LINK, strict_allow_default=True)
    assert serde.encode(LINK) == serde._header + buf.getvalue()
    assert serde.decode(serde.encode(LINK))["customer_id"] == "cust-ä"
    with pytest.raises(SerdeError):
        serde.encode({**LINK, "unknown": 1})
    with pytest.raises(SerdeError):
        serde.encode({k: v for k, v in LINK.items() if k != "customer_id"})
