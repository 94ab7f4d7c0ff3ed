"""Control records: event-time progress that travels through the topics beside the data.

A stage's clock must know how far each upstream partition has got in event time, that a
partition went quiet, or that the input ended (a demo, a backfill, a test). Those facts ride in
the same partitions as the data, as records whose ``webhouse-control`` header says what they are,
so a reader meets them in order with the records they speak about: everything before a
watermark record of ``ms`` W on a partition has been written, and what follows has event time
>= W (late records excepted, and flagged as such).

- ``end``: written by ``webhouse kafka end-of-input`` (or the demo) to every raw partition; the
  worker releases everything it holds for that partition and passes the ``end`` on.
- ``watermark``: written by the worker to the enriched partition it fed, with the partition's
  watermark (``ms``) and whether the partition is ``active``, ``idle`` (caught up and quiet: it
  holds no clock back) or ``ended``.

Every consumer of these topics skips control records (``is_control``) before decoding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum

from pipeline.errors import ProcessingError
from pipeline.immutable import immutable

HEADER = "webhouse-control"
END_OF_INPUT = b"end"
WATERMARK = b"watermark"
Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


class SourceState(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"
    ENDED = "ended"


@immutable
class Progress:
    """One partition's event-time progress as its writer saw it."""

    state: SourceState
    ms: int | None  # the partition's watermark; None before it has seen an event

    def to_bytes(self) -> bytes:
        return json.dumps({"state": self.state.value, "ms": self.ms}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Progress:
        try:
            raw = json.loads(value)
            ms = raw["ms"]
            return cls(SourceState(raw["state"]), None if ms is None else int(ms))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProcessingError("control", f"bad watermark record {value[:80]!r}: {exc}") from exc


def control_kind(headers: Headers) -> bytes | None:
    """The control header's value (``end``, ``watermark``), or None for a data record."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == HEADER:
            return value.encode() if isinstance(value, str) else value or b""
    return None


def is_control(headers: Headers) -> bool:
    return control_kind(headers) is not None


def watermark_headers() -> tuple[tuple[str, bytes], ...]:
    """A watermark record's headers, as a stage's ``Record`` carries them (``list()`` them for
    confluent-kafka's ``produce``, which takes a list or a dict)."""
    return ((HEADER, WATERMARK),)


def end_headers() -> tuple[tuple[str, bytes], ...]:
    """An end-of-input record's headers (see ``watermark_headers``)."""
    return ((HEADER, END_OF_INPUT),)


def send_end_of_input(bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    """Write an end-of-input record to every partition of ``topic``; returns how many.

    Call it once every event of the run is acknowledged: the stages then close what they hold
    (sessions, absence windows) instead of waiting for traffic that will not come.
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    metadata = producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ProcessingError("control", f"end of input: topic {topic!r} not found on {bootstrap}")
    failures: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for partition in sorted(metadata.partitions):
        producer.produce(topic, b"", partition=partition, headers=list(end_headers()), on_delivery=delivered)
    if producer.flush(timeout_s) or failures:
        raise ProcessingError("control", f"end of input not acknowledged on {topic}: {failures[:3]}")
    return len(metadata.partitions)
