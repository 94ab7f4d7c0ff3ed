"""Avro records to flat Arrow rows, driven by the schema itself.

Nested records (``context.page.url``) become top-level columns joined by ``_``
(``context_page_url``): every column is then a plain, nullable leaf that DuckDB
filters and Delta's schema merge handles, and a new optional field in any nested
record turns into a new nullable column with no code change. Arrays and maps keep
their shape (``commerce_products`` is a list of structs, ``properties`` a map),
which DuckDB unnests well. Personal identifiers (``email``, ``phone``, ``ip`` at
any depth) are replaced by their keyed hash in a ``<name>_hmac`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sinks.pii import HASHED_SUFFIX, PII_FIELDS, PiiHasher


@dataclass(frozen=True, slots=True)
class Column:
    """One flat column: its name, Arrow type and how to read it from a decoded record."""

    name: str
    type: pa.DataType
    path: tuple[str, ...]
    pii: str | None = None  # kind of identifier to hash, if any


def _strip_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return rest[0] if len(rest) == 1 else rest
    return avro_type


def arrow_type(avro_type: Any) -> pa.DataType:
    """Arrow type of a (non-flattened) Avro type; records become structs."""
    t = _strip_null(avro_type)
    if isinstance(t, list):  # a true union: keep the text form, rare in our schemas
        return pa.string()
    if isinstance(t, str):
        return {
            "string": pa.string(),
            "int": pa.int32(),
            "long": pa.int64(),
            "float": pa.float32(),
            "double": pa.float64(),
            "boolean": pa.bool_(),
            "bytes": pa.binary(),
        }.get(t, pa.string())
    logical = t.get("logicalType")
    if logical in ("timestamp-millis", "timestamp-micros"):
        return pa.timestamp("us", tz="UTC")
    if logical == "date":
        return pa.date32()
    kind = t["type"]
    if kind == "enum":
        return pa.string()
    if kind == "array":
        return pa.list_(arrow_type(t["items"]))
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(t["values"]))
    if kind == "record":
        return pa.struct([pa.field(f["name"], arrow_type(f["type"])) for f in t["fields"]])
    return arrow_type(kind)


def flat_columns(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[Column]:
    """The flat columns of an Avro record schema, nested records expanded."""
    columns: list[Column] = []
    for field in schema["fields"]:
        path = (*prefix, field["name"])
        t = _strip_null(field["type"])
        if isinstance(t, dict) and t.get("type") == "record":
            columns.extend(flat_columns(t, path))
            continue
        name = "_".join(path)
        if field["name"] in PII_FIELDS:
            columns.append(Column(name + HASHED_SUFFIX, pa.string(), path, pii=field["name"]))
        else:
            columns.append(Column(name, arrow_type(field["type"]), path))
    return columns


def _dig(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if value is None:
            return None
        value = value.get(key)
    return value


def _arrowable(value: Any) -> Any:
    """Avro enums decode to str already; maps decode to dicts, which Arrow wants as pairs."""
    if isinstance(value, dict):
        return list(value.items())
    return value


class Flattener:
    """Compiled once per schema; turns decoded records into flat rows or, faster, a flat Arrow table."""

    def __init__(self, schema: dict[str, Any], hasher: PiiHasher) -> None:
        self.columns = flat_columns(schema)
        self.hasher = hasher
        self._maps = {c.name for c in self.columns if pa.types.is_map(c.type)}
        self._nested = pa.schema([pa.field(f["name"], arrow_type(f["type"])) for f in schema["fields"]])

    def table(self, records: list[dict[str, Any]]) -> pa.Table:
        """The flat columns of many records at once: Arrow builds and flattens the nested structs
        natively (several times faster than ``row``); only the identifiers are hashed in Python."""
        nested = pa.Table.from_pylist(records, schema=self._nested)
        while any(pa.types.is_struct(f.type) for f in nested.schema):
            nested = nested.flatten()
        arrays = []
        for c in self.columns:
            source = nested[".".join(c.path)]
            if c.pii is not None:
                kind, memo = c.pii, {}  # a batch repeats its addresses: hash each once
                values = source.to_pylist()
                for v in set(values):
                    memo[v] = self.hasher.hash(kind, v)
                source = pa.array([memo[v] for v in values], pa.string())
            arrays.append(source)
        return pa.Table.from_arrays(arrays, schema=pa.schema(self.fields()))

    def fields(self) -> list[pa.Field]:
        return [pa.field(c.name, c.type) for c in self.columns]

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in self.columns:
            value = _dig(record, c.path)
            if c.pii is not None:
                value = self.hasher.hash(c.pii, value)
            elif c.name in self._maps and value is not None:
                value = _arrowable(value)
            out[c.name] = value
        return out
