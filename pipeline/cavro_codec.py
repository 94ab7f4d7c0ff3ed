"""Avro bodies through cavro (a Cython codec), with fastavro kept as the answer on anything it refuses.

On the customer event cavro decodes about 3x and encodes about 2x faster than fastavro (issue 11:
41 -> 13 us and 61-77 -> 28-32 us per event, measured side by side), and the raw event's decode is
the largest single piece of a worker's work, its encode of a collector's. fastavro stays the
reference: ``CavroCodec`` gives None whenever cavro refuses a value or a body, and the caller then
hands it to fastavro, which gives its bytes, its record or its error as before (so a refusal of
cavro's is passed on, never dropped). Where cavro is more lenient than fastavro a check comes first:
cavro writes any iterable as an array and takes an empty string or a list of pairs as a map, so
it takes a record only when each array in it is a list and each map a dict.
``tests/pipeline/test_cavro_codec.py`` holds it to fastavro's bytes, records and refusals with
hypothesis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cavro

from pipeline.immutable import immutable

# Records decode to dicts, as fastavro's do; a key the schema lacks is refused, as fastavro's
# strict writing does; a datetime before 1970 with a fraction of a millisecond is written as
# fastavro writes it (the alternate encoding; cavro's default rounds it the other way). The rest
# are cavro's defaults, which match fastavro's (naive datetimes as local time, defaults for
# missing fields that have one).
_OPTIONS = cavro.DEFAULT_OPTIONS.replace(
    record_decodes_to_dict=True, record_allow_extra_fields=False, alternate_timestamp_millis_encoding=True
)
# What cavro raises on a value or a body it cannot take (a truncated body gives EOFError, a bad
# union index IndexError or ValueError, bad UTF-8 UnicodeDecodeError, a value of the wrong type
# cavro.InvalidValue, ValueError or TypeError, a required sub-record None AttributeError).
_REFUSALS = (
    cavro.CavroException,
    ValueError,
    TypeError,
    AttributeError,
    EOFError,
    IndexError,
    KeyError,
    OverflowError,
)


@immutable
class Containers:
    """Where a record schema holds arrays and maps: (field, list or dict, the items' or values'
    own Containers when they are records, the sub-record's when the field is one)."""

    fields: tuple[tuple[str, type | None, Containers | None], ...] = ()

    def hold(self, record: Any) -> bool:
        """Whether every array of ``record`` is a list and every map a dict (None passes: the
        schema decides whether it may be null)."""
        if not isinstance(record, Mapping):
            return True  # not a record: cavro and fastavro refuse it alike
        for name, kind, inner in self.fields:
            value = record.get(name)
            if value is None:
                continue
            if kind is not None and type(value) is not kind:
                return False
            if inner is None:
                continue
            items = value if kind is list else value.values() if kind is dict else (value,)
            if not all(inner.hold(item) for item in items):
                return False
        return True


class ReusedRecord(Exception):
    """A record schema names a record type defined earlier in it (``containers`` checks each
    record where it is defined, so such a schema is left to fastavro)."""


def containers(schema: Any, named: set[str] | None = None) -> Containers | None:
    """The array and map fields of a record schema, nested records included; None when it has none.
    Raises ``ReusedRecord`` when the schema names a record it defined before."""
    named = set() if named is None else named
    if isinstance(schema, str):
        if schema in named or schema.rpartition(".")[2] in named:
            raise ReusedRecord(schema)
        return None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    named.update((schema["name"], schema["name"].rpartition(".")[2]))
    fields: list[tuple[str, type | None, Containers | None]] = []
    for field in schema["fields"]:
        for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            kind, inner = _container(branch, named)
            if kind is not None or inner is not None:
                fields.append((field["name"], kind, inner))
    return Containers(tuple(fields)) if fields else None


def _container(avro_type: Any, named: set[str]) -> tuple[type | None, Containers | None]:
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        return list, containers(avro_type["items"], named)
    if isinstance(avro_type, dict) and avro_type.get("type") == "map":
        return dict, containers(avro_type["values"], named)
    return None, containers(avro_type, named)


class CavroCodec:
    """One record schema's Avro bodies through cavro; None where fastavro must answer instead."""

    def __init__(self, schema: cavro.Schema, checks: Containers | None) -> None:
        self._schema = schema
        self._containers = checks

    @classmethod
    def compile(cls, schema: dict[str, Any]) -> CavroCodec | None:
        """The codec of a record schema; None for a schema left to fastavro alone (one that names a
        record it defined before, or that cavro does not parse: fastavro's parse said it is valid)."""
        try:
            checks = containers(schema)
            return cls(cavro.Schema(schema, options=_OPTIONS), checks)
        except (ReusedRecord, *_REFUSALS):
            return None

    def write(self, record: Mapping[str, Any]) -> bytes | None:
        if self._containers is not None and not self._containers.hold(record):
            return None
        try:
            body: bytes = self._schema.binary_encode(record)
        except _REFUSALS:
            return None  # fastavro writes it, or raises its own error for it
        return body

    def read(self, body: bytes) -> dict[str, Any] | None:
        try:
            record = self._schema.binary_decode(body)
        except _REFUSALS:
            return None  # fastavro reads it, or raises its own error for it
        return record if isinstance(record, dict) else None
