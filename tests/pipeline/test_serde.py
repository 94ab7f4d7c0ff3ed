import copy
import io
import json
from pathlib import Path

import fastavro
import pytest

from pipeline.errors import SerdeError, UnknownSchemaError
from pipeline.serde import SchemaCatalog, SingleObjectSerde, make_serde, schema_fingerprint
from tests.factories import PAYLOADS, make_event

ALL_EVENTS = sorted(PAYLOADS)


def assert_contains(decoded: object, original: object, path: str = "$") -> None:
    """Decoded records fill every optional field with None; every value that was set must survive."""
    if isinstance(original, dict):
        assert isinstance(decoded, dict), path
        for key, value in original.items():
            assert_contains(decoded[key], value, f"{path}.{key}")
    elif isinstance(original, list):
        assert isinstance(decoded, list) and len(decoded) == len(original), path
        for i, (d, o) in enumerate(zip(decoded, original, strict=True)):
            assert_contains(d, o, f"{path}[{i}]")
    else:
        assert decoded == original, path


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_single_object_round_trip_every_event_type(event: str) -> None:
    serde = SingleObjectSerde("customer_event")
    original = make_event(event)
    data = serde.encode(original)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == serde.schema.fingerprint
    assert_contains(serde.decode(data), original)


@pytest.mark.parametrize("call", ["identify", "page", "screen", "alias", "group"])
def test_round_trip_other_call_types(call: str) -> None:
    serde = SingleObjectSerde("customer_event")
    record = make_event(None, call=call, previous_id="old-id" if call == "alias" else None)
    assert serde.decode(serde.encode(record))["type"] == call


@pytest.mark.parametrize("event", ["Order Completed", "Email Link Clicked", "Consent Withdrawn"])
def test_confluent_wire_format_round_trip_with_mock_registry(event: str) -> None:
    serde = make_serde("customer_event", "mock://webhouse-tests")
    data = serde.encode(make_event(event), "webhouse.events.raw")
    assert data[0] == 0 and len(data) > 5  # magic byte + 4-byte schema id
    decoded = serde.decode(data, "webhouse.events.raw")
    assert decoded["event"] == event
    assert decoded["message_id"] == make_event(event)["message_id"]


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_encode_naming_the_union_branches_writes_fastavros_own_bytes(event: str) -> None:
    """The tuple notation only saves fastavro the search: bytes equal its own branch resolution,
    and the caller's record is not changed."""
    serde = SingleObjectSerde("customer_event")
    original = make_event(event)
    before = copy.deepcopy(original)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, serde.schema.parsed, original, strict_allow_default=True)
    assert serde.encode(original) == serde._header + buf.getvalue()
    assert original == before


def test_encode_still_refuses_an_unknown_key_inside_a_named_sub_record() -> None:
    record = make_event("Product Viewed")
    record["context"]["page"] = {**(record["context"]["page"] or {}), "not_in_the_schema": "x"}
    with pytest.raises(SerdeError, match="more fields than the schema specifies: not_in_the_schema"):
        SingleObjectSerde("customer_event").encode(record)


def test_decode_rejects_foreign_bytes_with_serde_error() -> None:
    serde = SingleObjectSerde("customer_event")
    with pytest.raises(SerdeError, match="single-object"):
        serde.decode(b'{"json": true}')
    with pytest.raises(UnknownSchemaError):
        serde.decode(b"\xc3\x01" + b"\x00" * 8 + b"\x02")


def test_encode_rejects_record_missing_required_field() -> None:
    record = make_event("Product Viewed")
    del record["message_id"]
    with pytest.raises(SerdeError, match="customer_event"):
        SingleObjectSerde("customer_event").encode(record)


def _write_catalog(directory: Path, current: dict, history: list[dict]) -> SchemaCatalog:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "customer_event.avsc").write_text(json.dumps(current))
    for i, old in enumerate(history):
        (directory / "history" / "customer_event").mkdir(parents=True, exist_ok=True)
        (directory / "history" / "customer_event" / f"v{i}.avsc").write_text(json.dumps(old))
    return SchemaCatalog(directory)


def test_old_writer_new_reader_evolution(tmp_path: Path, repo_root: Path) -> None:
    """Data written before an optional field existed decodes with the new reader (field = default)."""
    old = json.loads((repo_root / "schemas" / "customer_event.avsc").read_text())
    new = copy.deepcopy(old)
    new["fields"].append({"name": "loyalty_tier", "type": ["null", "string"], "default": None})
    assert schema_fingerprint(old) != schema_fingerprint(new)

    old_serde = SingleObjectSerde("customer_event", _write_catalog(tmp_path / "old", old, []))
    new_serde = SingleObjectSerde("customer_event", _write_catalog(tmp_path / "new", new, [old]))
    written_by_old = old_serde.encode(make_event("Order Completed"))
    decoded = new_serde.decode(written_by_old)
    assert decoded["loyalty_tier"] is None
    assert decoded["commerce"]["order_id"] == "o-1"

    # The new writer's data is not readable by a reader that does not know its fingerprint.
    with pytest.raises(UnknownSchemaError):
        old_serde.decode(new_serde.encode(make_event("Order Completed", loyalty_tier="gold")))
