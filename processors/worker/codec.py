"""Raw event bytes -> record, and record + enrichment -> enriched event bytes, decoding once.

Encoding the full customer event is the most expensive step of the worker
(fastavro writes ~14k of these big records per second and core, against ~35k
decodes). But ``enrichment`` is the LAST field of the event and is null on the
raw topic, so an enriched event written with the same schema is the raw body
minus its final null-union byte, plus the union branch 1 and the encoded
enrichment record (Avro binary is the plain concatenation of fields). When the
raw event was written with the current schema in single-object encoding, the
codec splices exactly that; otherwise (an older writer schema, a registry wire
format) it re-encodes the whole record.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro

from pipeline.errors import SchemaError
from pipeline.flat_avro import FlatWriter, zigzag_varint
from pipeline.serde import SingleObjectSerde, make_serde

_HEADER_LEN = 10
_NULL_BRANCH = b"\x00"
_RECORD_BRANCH = b"\x02"  # zigzag varint of union index 1 (also: string branch of ["null", "string"])
_SPLICED = b"S"
_FULL = b"F"


def _enrichment_branch(raw: Mapping[str, Any]) -> dict[str, Any]:
    last = raw["fields"][-1]
    if last["name"] != "enrichment":
        raise SchemaError("customer_event: enrichment is not the last field; splicing is impossible")
    branch = next(t for t in last["type"] if isinstance(t, dict) and t.get("type") == "record")
    return {**branch, "namespace": raw.get("namespace")}


class EventCodec:
    """Decode a raw customer event once; produce its enriched bytes as cheaply as the format allows."""

    def __init__(self, schema_registry_url: str | None = None) -> None:
        self.serde = make_serde("customer_event", schema_registry_url)
        self._splice = isinstance(self.serde, SingleObjectSerde)
        if isinstance(self.serde, SingleObjectSerde):
            self._header = self.serde._header
            branch = _enrichment_branch(self.serde.schema.raw)
            self._enrichment = fastavro.parse_schema(branch)
            self._flat = FlatWriter.compile(branch)  # a third of fastavro's time (pipeline.flat_avro)

    def decode(self, value: bytes, topic: str = "") -> dict[str, Any]:
        return self.serde.decode(value, topic)

    def can_splice(self, value: bytes, record: Mapping[str, Any]) -> bool:
        return (
            self._splice
            and value[:_HEADER_LEN] == self._header
            and record.get("enrichment") is None
            and value[-1:] == _NULL_BRANCH
        )

    def enriched(
        self, value: bytes, record: dict[str, Any], enrichment: Mapping[str, Any], topic: str = ""
    ) -> bytes:
        """The enriched event: ``record`` (decoded from ``value``) with ``enrichment`` filled."""
        if self.can_splice(value, record):
            flat = self._flat.write(enrichment) if self._flat is not None else None
            if flat is not None:
                return b"".join((value[:-1], _RECORD_BRANCH, flat))
            buf = io.BytesIO()
            buf.write(value[:-1])
            buf.write(_RECORD_BRANCH)
            fastavro.schemaless_writer(buf, self._enrichment, enrichment)
            return buf.getvalue()
        return self.serde.encode({**record, "enrichment": dict(enrichment)}, topic)

    # Kept for events a worker from before 2 December 2026 left waiting in its state (it held each
    # event until the watermark gave it its final session id; now events go on at arrival and
    # ``enriched`` is all a new worker writes). What waited is this compact "pending" form: the
    # raw body and the encoded enrichment with the byte offsets of its two still-open fields
    # (session_id, is_late), so ``finish`` is a few byte concatenations, not an Avro round trip.

    def pending(self, value: bytes, record: dict[str, Any], enrichment: Mapping[str, Any]) -> bytes:
        if not self.can_splice(value, record):
            return _FULL + self.serde.encode({**record, "enrichment": dict(enrichment)})
        event_ms = _to_ms(enrichment["event_time"])
        fields = {**enrichment, "event_time": event_ms, "session_id": None, "is_late": False}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._enrichment, fields)
        encoded = buf.getvalue()
        # Field order of Enrichment: event_time, customer_id, session_id, is_bot, bot_name, is_late.
        at_session = _long_len(event_ms) + _optional_string_len(fields["customer_id"])
        at_late = at_session + 2 + _optional_string_len(fields["bot_name"])
        if encoded[at_session] != 0 or encoded[at_late] != 0:  # the layout is not what we think
            return _FULL + self.serde.encode({**record, "enrichment": dict(enrichment)})
        return b"".join(
            (_SPLICED, struct.pack(">IHH", len(value) - 1, at_session, at_late), value[:-1], encoded)
        )

    def finish(self, pending: bytes, session_id: str | None, is_late: bool = False) -> bytes:
        """The enriched event bytes of a pending event, with its session id and late flag."""
        if pending[:1] == _SPLICED:
            split, at_session, at_late = struct.unpack(">IHH", pending[1:9])
            body = 9 + split
            enrichment = pending[body:]
            return b"".join(
                (
                    pending[9:body],
                    _RECORD_BRANCH,
                    enrichment[:at_session],
                    _optional_string(session_id),
                    enrichment[at_session + 1 : at_late],
                    b"\x01" if is_late else b"\x00",
                    enrichment[at_late + 1 :],
                )
            )
        record = self.serde.decode(pending[1:])
        record["enrichment"] = {**record["enrichment"], "session_id": session_id, "is_late": is_late}
        return self.serde.encode(record)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _to_ms(value: datetime | int) -> int:
    return value if isinstance(value, int) else (value - _EPOCH) // _MS


def _long_len(n: int) -> int:
    return len(zigzag_varint(n))


def _optional_string(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    data = value.encode()
    return _RECORD_BRANCH + zigzag_varint(len(data)) + data


def _optional_string_len(value: str | None) -> int:
    return len(_optional_string(value))
