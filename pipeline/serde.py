"""Avro serde: the in-repo schema catalog and the two wire formats.

- Single-object encoding (Avro spec): ``C3 01`` + 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema's Parsing Canonical Form + the binary body. The
  fingerprint is looked up in the catalog (``schemas/*.avsc`` plus the released
  versions kept in ``schemas/history/``, see docs/schemas.md), so no registry server
  is needed and a reader decodes data written by any released version of a schema.
- Confluent wire format (``00`` + 4-byte schema id + body) through confluent-kafka's
  schema-registry client, used when ``kafka.schema_registry_url`` is set.

Both sit behind ``Serde``; library errors surface as ``SerdeError``.

Encoding names the branch of every optional sub-record (``["null", Page]``) for fastavro
(its tuple notation, ``("io.webhouse.Page", {...})``): otherwise fastavro picks a union's
branch by validating the value against each candidate, which for a sub-record means the
whole sub-record again, and that was over a third of the collector's CPU. The bytes are the
same; strict writing (every field known, none missing without default) still applies.

Before fastavro, a body of the current schema goes through cavro (``pipeline.cavro_codec``),
2-3x faster on the customer event; whatever cavro refuses, fastavro answers as before.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from pipeline.cavro_codec import CavroCodec
from pipeline.errors import SchemaError, SerdeError, UnknownSchemaError
from pipeline.flat_avro import FlatWriter
from pipeline.immutable import immutable
from pipeline.settings import REPO_ROOT

SCHEMAS_DIR = REPO_ROOT / "schemas"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_HEADER_LEN = 10


@immutable
class Branches:
    """Where a record holds sub-records: (field, union branch full name or None for a plain
    record field, the sub-record's own Branches). Compiled once per schema (``branches``)."""

    fields: tuple[tuple[str, str | None, Branches], ...] = ()


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _record_branches(record: dict[str, Any], namespace: str | None, named: dict[str, Any]) -> Branches:
    namespace = record.get("namespace", namespace)
    named[_fullname(record["name"], namespace)] = record
    fields: list[tuple[str, str | None, Branches]] = []
    for f in record["fields"]:
        candidates = f["type"] if isinstance(f["type"], list) else [f["type"]]
        resolved = [named.get(_fullname(c, namespace), c) if isinstance(c, str) else c for c in candidates]
        records = [c for c in resolved if isinstance(c, dict) and c.get("type") == "record"]
        for c in resolved:  # named types defined inside arrays and maps, for later references
            if isinstance(c, dict) and c.get("type") in ("array", "map"):
                _named_within(c, namespace, named)
        if len(records) != 1 or (isinstance(f["type"], list) and len(candidates) != 2):
            continue  # no sub-record, or a union fastavro must resolve itself
        sub = records[0]
        inner = _record_branches(sub, namespace, named)
        branch = (
            _fullname(sub["name"], sub.get("namespace", namespace)) if isinstance(f["type"], list) else None
        )
        if branch is not None or inner.fields:
            fields.append((f["name"], branch, inner))
    return Branches(tuple(fields))


def _named_within(avro_type: Any, namespace: str | None, named: dict[str, Any]) -> None:
    if isinstance(avro_type, list):
        for t in avro_type:
            _named_within(t, namespace, named)
    elif isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "record":
            _record_branches(avro_type, namespace, named)
        elif kind == "array":
            _named_within(avro_type["items"], namespace, named)
        elif kind == "map":
            _named_within(avro_type["values"], namespace, named)


def branches(raw: dict[str, Any]) -> Branches:
    """The optional sub-records of a record schema, for ``tag_branches``."""
    return _record_branches(raw, raw.get("namespace"), {})


def tag_branches(record: Any, plan: Branches) -> Any:
    """``record`` with each optional sub-record written as fastavro's (branch name, value):
    shallow copies along the way, the caller's dicts untouched. Anything not a dict is left
    for fastavro to refuse as before."""
    if not plan.fields or not isinstance(record, dict):
        return record
    out = dict(record)
    for name, branch, inner in plan.fields:
        value = out.get(name)
        if isinstance(value, dict):
            value = tag_branches(value, inner)
            out[name] = value if branch is None else (branch, value)
    return out


@immutable
class SchemaVersion:
    """One parsed version of a named schema."""

    name: str  # file stem, e.g. "customer_event"
    fullname: str  # Avro full name, e.g. "io.webhouse.CustomerEvent"
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO
    parsed: Any  # fastavro parsed schema
    raw: dict[str, Any]
    path: Path


def schema_fingerprint(raw: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, as the 8 bytes of single-object encoding."""
    try:
        canonical = to_parsing_canonical_form(fastavro.parse_schema(raw, _write_hint=False))
    except Exception as exc:
        raise SchemaError(f"cannot canonicalise schema {raw.get('name')!r}: {exc}") from exc
    # fastavro gives the little-endian bytes as hex already.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _load(path: Path, name: str) -> SchemaVersion:
    try:
        raw = json.loads(path.read_text())
        parsed = fastavro.parse_schema(raw)
    except Exception as exc:
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from exc
    fullname = raw["name"] if "." in raw["name"] else f"{raw.get('namespace', '')}.{raw['name']}".lstrip(".")
    return SchemaVersion(name, fullname, schema_fingerprint(raw), parsed, raw, path)


class SchemaCatalog:
    """Every schema the project knows: current versions by name, all versions by fingerprint."""

    def __init__(self, directory: Path = SCHEMAS_DIR) -> None:
        self.directory = directory
        self.current: dict[str, SchemaVersion] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path in sorted(directory.glob("*.avsc")):
            version = _load(path, path.stem)
            self.current[path.stem] = version
            self.by_fingerprint[version.fingerprint] = version
        # history/<name>/v<N>.avsc: released versions, kept so old data stays readable.
        for path in sorted(directory.glob("history/*/*.avsc")):
            version = _load(path, path.parent.name)
            self.by_fingerprint.setdefault(version.fingerprint, version)
        if not self.current:
            raise SchemaError(f"no .avsc files in {directory}")

    def get(self, name: str) -> SchemaVersion:
        try:
            return self.current[name]
        except KeyError:
            raise SchemaError(f"no schema named {name!r} in {self.directory}") from None


@cache
def default_catalog() -> SchemaCatalog:
    return SchemaCatalog()


class Serde(Protocol):
    """Turns records of one named schema into bytes and back."""

    schema_name: str

    def encode(self, record: dict[str, Any], topic: str = "") -> bytes: ...

    def decode(self, data: bytes, topic: str = "") -> dict[str, Any]: ...


class SingleObjectSerde:
    """Avro single-object encoding against the in-repo catalog; reads any known writer version."""

    def __init__(self, schema_name: str, catalog: SchemaCatalog | None = None) -> None:
        self.catalog = catalog or default_catalog()
        self.schema_name = schema_name
        self.schema = self.catalog.get(schema_name)
        self._header = SINGLE_OBJECT_MAGIC + self.schema.fingerprint
        self._branches = branches(self.schema.raw)
        self._flat = FlatWriter.compile(self.schema.raw)  # profiles, sessions, identity links
        self._cavro = CavroCodec.compile(self.schema.raw)  # the customer event, and the rest

    def encode(self, record: dict[str, Any], topic: str = "") -> bytes:
        if self._flat is not None:
            body = self._flat.write(record, exact=True)
            if body is not None:  # else fastavro writes it, or says what is wrong
                return self._header + body
        if self._cavro is not None:
            body = self._cavro.write(record)
            if body is not None:  # the same: fastavro has the last word on what cavro refuses
                return self._header + body
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            tagged = tag_branches(record, self._branches)
            fastavro.schemaless_writer(buf, self.schema.parsed, tagged, strict_allow_default=True)
        except Exception as exc:
            raise SerdeError(f"cannot encode {self.schema_name}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes, topic: str = "") -> dict[str, Any]:
        if len(data) < _HEADER_LEN or data[:2] != SINGLE_OBJECT_MAGIC:
            raise SerdeError(f"not Avro single-object encoded ({len(data)} bytes, starts {data[:2]!r})")
        writer = self.catalog.by_fingerprint.get(data[2:_HEADER_LEN])
        if writer is None:
            raise UnknownSchemaError(f"unknown writer schema fingerprint {data[2:_HEADER_LEN].hex()}")
        if writer is self.schema and self._cavro is not None:
            record = self._cavro.read(data[_HEADER_LEN:])
            if record is not None:  # else fastavro reads it, or says what is wrong
                return record
        try:
            reader = None if writer is self.schema else self.schema.parsed
            result = fastavro.schemaless_reader(io.BytesIO(data[_HEADER_LEN:]), writer.parsed, reader)
        except Exception as exc:
            raise SerdeError(f"cannot decode {self.schema_name}: {exc}") from exc
        if not isinstance(result, dict):
            raise SerdeError(f"{self.schema_name} decoded to {type(result).__name__}, not a record")
        return result


class ConfluentSerde:
    """Confluent wire format through confluent-kafka's schema-registry client."""

    def __init__(self, schema_name: str, registry_url: str, catalog: SchemaCatalog | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

        self.catalog = catalog or default_catalog()
        self.schema_name = schema_name
        schema_str = json.dumps(self.catalog.get(schema_name).raw)
        # new_client understands mock:// URLs (an in-process registry) as well as real ones.
        self.client = SchemaRegistryClient.new_client({"url": registry_url})
        self._serializer = AvroSerializer(self.client, schema_str, conf={"auto.register.schemas": True})
        self._deserializer = AvroDeserializer(self.client, schema_str)

    def encode(self, record: dict[str, Any], topic: str = "") -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        try:
            data = self._serializer(record, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:
            raise SerdeError(f"cannot encode {self.schema_name} for registry: {exc}") from exc
        assert data is not None
        return bytes(data)

    def decode(self, data: bytes, topic: str = "") -> dict[str, Any]:
        from confluent_kafka.serialization import MessageField, SerializationContext

        if len(data) < 5 or data[0] != 0:
            raise SerdeError(f"not Confluent wire format ({len(data)} bytes, starts {data[:1]!r})")
        try:
            result = self._deserializer(data, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:
            raise SerdeError(f"cannot decode {self.schema_name} from registry format: {exc}") from exc
        return dict(result)


def make_serde(schema_name: str, schema_registry_url: str | None = None) -> Serde:
    """The serde the settings ask for: registry format when a URL is set, single-object otherwise."""
    if schema_registry_url:
        return ConfluentSerde(schema_name, schema_registry_url)
    return SingleObjectSerde(schema_name)
