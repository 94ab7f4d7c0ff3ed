"""``FlatWriter`` writes exactly fastavro's bytes, or declines (None) and leaves the record to it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import SerdeError
from pipeline.flat_avro import FlatWriter, zigzag_varint
from pipeline.serde import SingleObjectSerde, default_catalog
from tests.pipeline.avro_values import LONGS, TIMES

_RAW = default_catalog().get("customer_event").raw
ENRICHMENT = next(t for t in _RAW["fields"][-1]["type"] if isinstance(t, dict))
SCHEMA = {**ENRICHMENT, "namespace": _RAW.get("namespace")}
PARSED = fastavro.parse_schema(SCHEMA)
WRITER = FlatWriter.compile(SCHEMA)


def _fastavro(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, record)
    return buf.getvalue()


def _values(avro_type: Any) -> st.SearchStrategy[Any]:
    """Values of one Avro type that ``FlatWriter`` writes (the types of the flat schemas)."""
    if isinstance(avro_type, list):
        return st.one_of(st.none(), _values(avro_type[1]))
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if avro_type.get("logicalType") == "timestamp-millis":
            return TIMES
        if kind == "enum":
            return st.sampled_from(avro_type["symbols"])
        if kind == "array":
            return st.lists(_values(avro_type["items"]), max_size=4)
        if kind == "map":
            return st.dictionaries(st.text(max_size=5), _values(avro_type["values"]), max_size=4)
        avro_type = kind
    return {
        "string": st.text(),
        "boolean": st.booleans(),
        "long": LONGS,
        "int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "double": st.floats(),
    }[avro_type]


def _value(field: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _values(field["type"])


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
        _one_field("float"),
        _one_field("bytes"),
        _one_field(["string", "null"]),
        _one_field(["null", "string", "long"]),
        _one_field({"type": "array", "items": {"type": "array", "items": "long"}}),
        _one_field({"type": "map", "values": {"type": "record", "name": "S", "fields": []}}),
        _one_field({"type": "long", "logicalType": "timestamp-micros"}),
        _one_field("SomeNamedType"),
        {"type": "enum", "name": "E", "symbols": ["A"]},
    ],
)
def test_other_schemas_are_not_flat(schema: dict[str, Any]) -> None:
    assert FlatWriter.compile(schema) is None


FLAT_SCHEMAS = ("profile", "session", "identity_link")


@pytest.mark.parametrize("name", FLAT_SCHEMAS)
def test_the_profile_session_and_link_schemas_are_flat(name: str) -> None:
    assert FlatWriter.compile(default_catalog().get(name).raw) is not None


@pytest.mark.parametrize("name", FLAT_SCHEMAS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_writes_fastavros_bytes_for_every_flat_schema(name: str, data: st.DataObject) -> None:
    """Arrays, maps, enums and doubles too: each value as fastavro writes it."""
    raw = default_catalog().get(name).raw
    writer = FlatWriter.compile(raw)
    assert writer is not None
    record = data.draw(st.fixed_dictionaries({f["name"]: _value(f) for f in raw["fields"]}))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw), record)
    assert writer.write(record) == buf.getvalue()


@pytest.mark.parametrize(
    ("avro_type", "value"),
    [
        ("double", 1),  # an int: fastavro's own coercion decides
        ("double", True),
        ({"type": "array", "items": "string"}, "abc"),  # a string is no array here
        ({"type": "array", "items": "string"}, ["a", 1]),
        ({"type": "map", "values": "int"}, {1: 1}),  # a key not a string
        ({"type": "map", "values": "int"}, {"a": 2**31}),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "B"),
    ],
)
def test_declines_collections_and_enums_it_cannot_write_exactly(avro_type: Any, value: Any) -> None:
    writer = FlatWriter.compile(_one_field(avro_type))
    assert writer is not None
    assert writer.write({"x": value}) is None


@given(LONGS)
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
