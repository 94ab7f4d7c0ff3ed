"""Filling the typed sub-records of customer_event.avsc from JSON objects, driven by the schema.

The field list of each typed record (Page, Device, Traits, Commerce, Product, ...) is
read from the schema itself, so an optional field added to the .avsc is picked up here
without a code change. Segment sends snake_case in properties and camelCase in context
and traits; each field is looked up under both spellings. Whatever a record does not
take stays with the ``Source`` and ends up in the ``properties`` map.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from pipeline.collector import coerce
from pipeline.immutable import immutable
from pipeline.serde import default_catalog

_SCALARS = {"string", "int", "double", "boolean", "long"}


@immutable
class FieldSpec:
    name: str
    kind: str  # string, int, double, boolean, timestamp, or "other" (arrays, maps, records)


def _kind(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        non_null = [t for t in avro_type if t != "null"]
        return _kind(non_null[0]) if len(non_null) == 1 else "other"
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-millis":
            return "timestamp"
        return "other"
    return avro_type if avro_type in _SCALARS else "other"


def _records(avro_type: Any, found: dict[str, list[dict[str, Any]]]) -> None:
    if isinstance(avro_type, list):
        for branch in avro_type:
            _records(branch, found)
    elif isinstance(avro_type, dict):
        if avro_type.get("type") == "record":
            found[avro_type["name"]] = avro_type["fields"]
            for f in avro_type["fields"]:
                _records(f["type"], found)
        elif avro_type.get("type") == "array":
            _records(avro_type["items"], found)


@cache
def record_fields(record_name: str) -> tuple[FieldSpec, ...]:
    """The fields of one named record of customer_event.avsc, in schema order."""
    found: dict[str, list[dict[str, Any]]] = {}
    _records(default_catalog().get("customer_event").raw, found)
    return tuple(FieldSpec(f["name"], _kind(f["type"])) for f in found[record_name])


@cache
def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


class Source:
    """A JSON object being mapped: hands out its values once and keeps track of the rest."""

    def __init__(self, data: dict[str, Any], path: str) -> None:
        self.data = data
        self.path = path
        self.taken: set[str] = set()

    def key_for(self, name: str) -> str | None:
        data, taken = self.data, self.taken
        if name in data and name not in taken:
            return name
        alias = camel(name)
        if alias != name and alias in data and alias not in taken:
            return alias
        return None

    def take_raw(self, name: str) -> tuple[str, Any] | None:
        key = self.key_for(name)
        if key is None:
            return None
        self.taken.add(key)
        return key, self.data[key]

    def take(self, name: str, kind: str) -> Any:
        found = self.take_raw(name)
        if found is None:
            return None
        key, value = found
        return convert(value, kind, f"{self.path}.{key}")

    def rest(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in self.taken}


def convert(value: Any, kind: str, path: str) -> Any:
    if kind == "string":
        return coerce.as_str(value, path)
    if kind == "int":
        return coerce.as_int(value, path)
    if kind == "double":
        return coerce.as_float(value, path)
    if kind == "boolean":
        return coerce.as_bool(value, path)
    if kind == "timestamp":
        return coerce.as_timestamp(value, path)
    raise ValueError(f"no conversion for kind {kind!r}")  # a schema field this module does not fill


@immutable
class _FillPlan:
    names: tuple[str, ...]  # every field, schema order
    scalars: tuple[FieldSpec, ...]  # the fields ``fill`` takes from the source
    by_key: dict[str, tuple[int, ...]]  # a source key (name or camelCase alias) -> indexes in scalars


@cache
def _fill_plan(record_name: str) -> _FillPlan:
    fields = record_fields(record_name)
    scalars = tuple(spec for spec in fields if spec.kind != "other")
    by_key: dict[str, tuple[int, ...]] = {}
    for i, spec in enumerate(scalars):
        for key in {spec.name, camel(spec.name)}:
            by_key[key] = (*by_key.get(key, ()), i)
    return _FillPlan(tuple(spec.name for spec in fields), scalars, by_key)


def fill(record_name: str, source: Source, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every field of ``record_name``: scalars taken from ``source``, the rest (arrays, maps,
    sub-records, ``skip``) left at their empty default for the caller.

    Only the fields with a candidate key in the source are looked at (a source has a few keys,
    a record up to dozens of fields), in schema order, so which field takes a key and which
    error is raised first are as if every field were tried in turn."""
    plan = _fill_plan(record_name)
    record: dict[str, Any] = dict.fromkeys(plan.names)
    by_key, taken = plan.by_key, source.taken
    wanted = sorted({i for key in source.data if key not in taken for i in by_key.get(key, ())})
    skipped = set(skip)
    for i in wanted:
        spec = plan.scalars[i]
        if spec.name not in skipped:
            record[spec.name] = source.take(spec.name, spec.kind)
    return record


def fill_from(record_name: str, data: Any, path: str, leftovers: dict[str, Any]) -> dict[str, Any] | None:
    """A nested optional record (context.page, context.device...): None when absent; keys the
    record does not know go to ``leftovers`` under their ``$``-prefixed path."""
    if data is None:
        return None
    source = Source(coerce.as_dict(data, path), path)
    record = fill(record_name, source)
    for key, value in source.rest().items():
        leftovers[f"${path}.{key}"] = value
    return record
