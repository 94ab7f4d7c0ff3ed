"""The collector's hot path, one request at a time, apart from HTTP:

    for each raw event: check shape and size (limits.py) -> map/validate (segment.py)
        -> check the event time (limits.py) -> encode Avro
        valid   -> raw-events topic, key = anonymous id else user id (a visitor's order)
        invalid -> dead-letter topic: the raw event as JSON, stage "collector", the reason
    produce everything, await every acknowledgement (bounded), only then count and answer.

A valid event is pseudonymised (pseudonymise.py) before it is encoded, and dead letters'
payloads and details are scrubbed by the same rules, so no topic holds a clear e-mail,
phone or IP address. A refused request (``RequestError``) is dead-lettered here too when the
caller decides it is worth it (see request.py). An exception the mapping did not mean to
raise (a bug, whatever the input) refuses that one event as ``unmappable_event``: logged
with its traceback, counted, dead-lettered; the other events of the request go on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline.collector.limits import EventLimits, check_event_time, check_shape, dead_letter_payload
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.producer import AsyncProducer, OutgoingMessage
from pipeline.collector.pseudonymise import Pseudonymiser
from pipeline.collector.request import ParsedRequest
from pipeline.collector.segment import as_imported, check_size, map_event
from pipeline.deadletter import DeadLetter
from pipeline.errors import RequestError, SerdeError, ValidationError
from pipeline.immutable import immutable
from pipeline.serde import Serde
from pipeline.topics import Topics

STAGE = "collector"
log = logging.getLogger(__name__)


@immutable
class EventError:
    index: int
    reason: str
    detail: str
    message_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "messageId": self.message_id,
            "code": self.reason,
            "message": self.detail,
        }


@immutable
class Outcome:
    accepted: int
    errors: tuple[EventError, ...]


@immutable
class Prepared:
    """What one request turns into before anything is sent: messages, counts, errors."""

    messages: tuple[OutgoingMessage, ...]
    accepted: tuple[tuple[str, str], ...]  # (source, call type) per valid event
    errors: tuple[EventError, ...]


class Ingestor:
    def __init__(
        self,
        topics: Topics,
        event_serde: Serde,
        dead_letter_serde: Serde,
        producer: AsyncProducer,
        metrics: CollectorMetrics,
        max_event_bytes: int,
        limits: EventLimits | None = None,
        pseudonymiser: Pseudonymiser | None = None,
    ) -> None:
        self.topics = topics
        self.event_serde = event_serde
        self.dead_letter_serde = dead_letter_serde
        self.producer = producer
        self.metrics = metrics
        self.max_event_bytes = max_event_bytes
        self.limits = limits or EventLimits()
        self.pseudonymiser = pseudonymiser  # None: PII passes in clear (collector.pii.enabled off)

    def map_one(self, parsed: ParsedRequest, raw: Any, received_at: datetime) -> tuple[dict[str, Any], bytes]:
        """One raw event -> (record, Avro bytes), or a ValidationError saying why not."""
        check_shape(raw, self.limits, cut=bool(parsed.cuts))
        check_size(raw, self.max_event_bytes)
        record = map_event(
            raw,
            received_at=received_at,
            source=parsed.source,
            implied_type=parsed.implied_type,
            defaults=parsed.defaults,
        )
        if parsed.imported:
            record = as_imported(record, raw, parsed.defaults)
        check_event_time(record, self.limits)
        if self.pseudonymiser is not None:
            record = self.pseudonymiser.record(record)
        try:
            return record, self.event_serde.encode(record, self.topics.raw_events)
        except SerdeError as exc:
            raise ValidationError("unencodable", str(exc)) from exc

    def prepare(self, parsed: ParsedRequest, received_at: datetime, meta: Mapping[str, str]) -> Prepared:
        messages: list[OutgoingMessage] = []
        accepted: list[tuple[str, str]] = []
        errors: list[EventError] = []
        for index, raw in enumerate(parsed.events):
            try:
                try:
                    record, value = self.map_one(parsed, raw, received_at)
                except ValidationError:
                    raise
                except Exception as bug:  # any input gets an answer, never a 500
                    log.exception("event %d of a request from %s could not be mapped", index, parsed.source)
                    self.metrics.unexpected_errors.labels(stage="event").inc()
                    raise ValidationError("unmappable_event", f"{type(bug).__name__}: {bug}"[:300]) from bug
            except ValidationError as exc:
                message_id = _message_id(raw)
                errors.append(EventError(index, exc.reason, self._scrub_text(exc.detail), message_id))
                letter = DeadLetter(
                    stage=STAGE,
                    reason=exc.reason,
                    detail=self._scrub_text(exc.detail),
                    payload=self._scrub(dead_letter_payload(_without_write_key(raw), parsed.cuts)),
                    failed_at=received_at,
                    message_id=message_id,
                    headers={**meta, "source": parsed.source, "index": str(index)},
                )
                messages.append(self._dead_letter_message(letter))
                continue
            key = record["anonymous_id"] or record["user_id"]
            messages.append(OutgoingMessage(self.topics.raw_events, value, key.encode()))
            accepted.append((parsed.source, record["type"]))
        return Prepared(tuple(messages), tuple(accepted), tuple(errors))

    async def ingest(self, parsed: ParsedRequest, received_at: datetime, meta: Mapping[str, str]) -> Outcome:
        """Send a request's events; returns once the broker acknowledged all (else ProduceError)."""
        return await self.send(self.prepare(parsed, received_at, meta))

    async def send(self, prepared: Prepared) -> Outcome:
        """Produce what ``prepare`` made; returns once the broker acknowledged all."""
        await self._send(prepared.messages)
        for (source, call), n in Counter(prepared.accepted).items():  # one inc per label set
            self.metrics.events_accepted.labels(source=source, type=call).inc(n)
        for error in prepared.errors:
            self.metrics.events_rejected.labels(reason=error.reason).inc()
            self.metrics.dead_letters.labels(reason=error.reason).inc()
        return Outcome(len(prepared.accepted), prepared.errors)

    async def dead_letter_request(
        self, error: RequestError, payload: bytes, received_at: datetime, meta: Mapping[str, str]
    ) -> None:
        letter = DeadLetter(
            stage=STAGE,
            reason=error.reason,
            detail=self._scrub_text(error.detail),
            payload=self._scrub(payload),
            failed_at=received_at,
            headers=dict(meta),
        )
        await self._send([self._dead_letter_message(letter)])
        self.metrics.dead_letters.labels(reason=error.reason).inc()

    def _scrub(self, payload: bytes) -> bytes:
        return payload if self.pseudonymiser is None else self.pseudonymiser.scrub_bytes(payload)

    def _scrub_text(self, detail: str) -> str:
        return detail if self.pseudonymiser is None else self.pseudonymiser.text(detail)

    def _dead_letter_message(self, letter: DeadLetter) -> OutgoingMessage:
        value = self.dead_letter_serde.encode(letter.to_record(), self.topics.dead_letters)
        return OutgoingMessage(self.topics.dead_letters, value, letter.dead_letter_id.encode())

    async def _send(self, messages: tuple[OutgoingMessage, ...] | list[OutgoingMessage]) -> None:
        started = time.perf_counter()
        await self.producer.send_all(messages)
        if messages:
            self.metrics.produce_seconds.observe(time.perf_counter() - started)


def _message_id(raw: Any) -> str | None:
    """The client's messageId if it is a plain value (a refused event's may be anything)."""
    given = raw.get("messageId") if isinstance(raw, dict) else None
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        return str(given)[:200]
    return None


def _without_write_key(raw: Any) -> Any:
    """The write key is a credential: it does not travel into the dead-letter topic."""
    if isinstance(raw, dict) and "writeKey" in raw:
        return {k: v for k, v in raw.items() if k != "writeKey"}
    return raw
