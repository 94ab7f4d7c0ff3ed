"""The serde's cavro path gives fastavro's answers: the same bytes, the same records, the same refusals.

Each property compares ``SingleObjectSerde`` as it is with the same serde without its cavro codec
(what it was before: fastavro alone), on customer events drawn from the schema itself, then on
the same events with a value, a key or a byte changed.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cavro_codec import CavroCodec, containers
from pipeline.errors import SerdeError
from pipeline.serde import SingleObjectSerde, default_catalog
from tests.factories import make_event
from tests.pipeline.avro_values import LONGS, TIMES

RAW = default_catalog().get("customer_event").raw
_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "string": st.text(max_size=8),
    "boolean": st.booleans(),
    "long": LONGS,
    "int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "double": st.floats(allow_nan=False),  # NaN != NaN would fail the record comparison, not the codec
    "float": st.floats(allow_nan=False, width=32),
    "bytes": st.binary(max_size=8),
}


def values(avro_type: Any) -> st.SearchStrategy[Any]:
    """Values of an Avro type, as a producer of customer events writes them."""
    if isinstance(avro_type, list):
        return st.one_of(*(values(t) for t in avro_type))
    if isinstance(avro_type, str):
        return _PRIMITIVES[avro_type]
    kind = avro_type["type"]
    if avro_type.get("logicalType") == "timestamp-millis":
        return TIMES
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in avro_type["fields"]})
    if kind == "enum":
        return st.sampled_from(avro_type["symbols"])
    if kind == "array":
        return st.lists(values(avro_type["items"]), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=4), values(avro_type["values"]), max_size=3)
    return values(kind)


EVENTS = values(RAW)
CAVRO = SingleObjectSerde("customer_event")
FASTAVRO = SingleObjectSerde("customer_event")
FASTAVRO._cavro = None  # the serde before cavro: fastavro alone
ODD_VALUES = [None, "", "x", 0, -1, 2**40, 2**70, 1.5, True, [], {}, ["x"], {"k": "v"}, [("k", "v")],
              ("t",), b"b", datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01"]  # fmt: skip


def outcome(work: Any) -> tuple[str, Any]:
    try:
        return "ok", work()
    except SerdeError:
        return "refused", None


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        found.append((*prefix, key))
        found.extend(paths(inner, (*prefix, key)))
    return found


def test_the_customer_event_goes_through_cavro() -> None:
    assert CAVRO._cavro is not None


def _writes_and_reads_as_fastavro(cavro: SingleObjectSerde, fastavro: SingleObjectSerde, record: Any) -> None:
    written = cavro.encode(record)
    assert written == fastavro.encode(record)
    assert cavro._cavro is not None and cavro._cavro.write(record) == written[10:]  # cavro wrote it
    # A timestamp beyond datetime's years is written, and refused when read, by both.
    read = outcome(lambda: fastavro.decode(written))
    assert outcome(lambda: cavro.decode(written)) == read
    if read[0] == "ok":
        assert cavro._cavro.read(written[10:]) == read[1]  # cavro read it


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_writes_and_reads_what_fastavro_does(event: dict[str, Any]) -> None:
    _writes_and_reads_as_fastavro(CAVRO, FASTAVRO, event)


OTHER_SCHEMAS = sorted(set(default_catalog().current) - {"customer_event"})


@pytest.mark.parametrize("name", OTHER_SCHEMAS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_other_schema_is_written_and_read_as_fastavro_does(name: str, data: st.DataObject) -> None:
    """Profiles, sessions and links are written by ``FlatWriter`` first, but read through cavro."""
    cavro, fastavro = SingleObjectSerde(name), SingleObjectSerde(name)
    fastavro._cavro = None
    _writes_and_reads_as_fastavro(cavro, fastavro, data.draw(values(default_catalog().get(name).raw)))


@settings(max_examples=500, deadline=None)
@given(EVENTS, st.data())
def test_a_changed_value_or_key_is_written_or_refused_as_fastavro_does(
    event: dict[str, Any], data: st.DataObject
) -> None:
    """cavro writes any iterable as an array and an empty string or list of pairs as a map;
    fastavro refuses them: the serde must too."""
    changed = copy.deepcopy(event)
    path = data.draw(st.sampled_from(paths(changed)))
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    how = data.draw(st.sampled_from(["value", "delete", "extra"]))
    if how == "value" or not isinstance(parent, dict):
        parent[path[-1]] = data.draw(st.sampled_from(ODD_VALUES))
    elif how == "delete":
        del parent[path[-1]]
    else:
        parent["not_in_the_schema"] = 1
    assert outcome(lambda: CAVRO.encode(changed)) == outcome(lambda: FASTAVRO.encode(changed))


@settings(max_examples=500, deadline=None)
@given(EVENTS, st.data())
def test_changed_bytes_are_read_or_refused_as_fastavro_does(
    event: dict[str, Any], data: st.DataObject
) -> None:
    body = bytearray(FASTAVRO.encode(event))
    how = data.draw(st.sampled_from(["cut", "flip", "append"]))
    if how == "cut":
        del body[data.draw(st.integers(10, len(body) - 1)) :]
    elif how == "flip":
        body[data.draw(st.integers(10, len(body) - 1))] = data.draw(st.integers(0, 255))
    else:
        body += data.draw(st.binary(min_size=1, max_size=4))
    # By repr: a changed byte can make a double NaN, which equals nothing, itself included.
    by_cavro, by_fastavro = (outcome(lambda s=serde: s.decode(bytes(body))) for serde in (CAVRO, FASTAVRO))
    assert repr(by_cavro) == repr(by_fastavro)


def test_a_nan_double_is_read_as_fastavro_reads_it() -> None:
    event = _an_event()
    event["commerce"]["products"][0]["price"] = float("nan")
    body = FASTAVRO.encode(event)
    assert CAVRO._cavro is not None and CAVRO._cavro.read(body[10:]) is not None  # cavro read it
    assert repr(CAVRO.decode(body)) == repr(FASTAVRO.decode(body))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("commerce", "products"), {}),  # a dict as an array
        (("commerce", "products"), ({"product_id": "p"},)),  # a tuple as an array
        (("consent", "purposes"), {"k": "v"}),
        (("properties",), ""),  # an empty string as a map
        (("properties",), [("k", "v")]),  # pairs as a map
    ],
)
def test_containers_of_another_type_get_fastavros_answer(path: tuple[str, ...], value: Any) -> None:
    """Whatever fastavro makes of them (an empty dict is an empty array to it, a string no map)."""
    event = _an_event()
    target = event
    for key in path[:-1]:
        target[key] = target.get(key) or {}
        target = target[key]
    target[path[-1]] = value
    assert outcome(lambda: CAVRO.encode(event)) == outcome(lambda: FASTAVRO.encode(event))


def _an_event() -> dict[str, Any]:
    return copy.deepcopy(make_event("Order Completed"))  # its nested dicts are the factory's own


def test_containers_are_found_in_nested_records_arrays_and_maps() -> None:
    checks = containers(RAW)
    assert checks is not None
    assert checks.hold({"properties": {"a": "b"}, "commerce": {"products": [{"product_id": "p"}]}})
    assert not checks.hold({"commerce": {"products": ({"product_id": "p"},)}})
    assert not checks.hold({"traits": {"extra": ""}})


def test_a_schema_that_names_a_record_it_defined_is_left_to_fastavro() -> None:
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    assert CavroCodec.compile(node) is None
    item = {"type": "record", "name": "Item", "fields": [{"name": "x", "type": "long"}]}
    fields = [{"name": "a", "type": item}, {"name": "b", "type": "Item"}]
    pair = {"type": "record", "name": "Pair", "fields": fields}
    assert CavroCodec.compile(pair) is None
