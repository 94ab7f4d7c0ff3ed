"""Sessions in event time, per device (session key: anonymous id, else user id): pure logic, no Kafka.

Public API (everything the worker needs; times are epoch milliseconds unless they are datetimes):

Policy
    ``SessionPolicy.from_settings(settings.worker.session)``: the rules (gap, max duration, allowed
    lateness, midnight split in an IANA zone, campaign split). ``policy.describe()`` is the text for
    ``webhouse worker --help``. ``CloseRule``: why a visit ended (the Avro enum's symbols).

Input
    ``SessionEvent(event_id, device_id, event_time, ...)``: frozen; the worker maps each enriched,
    non-bot event that has a session key to one (``device_id``: the anonymous id, else the user id;
    docs/identity.md). ``payload`` (optional bytes) is handed back
    with the event's assignment.

Per partition
    The worker (``processors.worker.core``) is the one sessionizer: it keeps the partition
    watermark (the largest event time seen, capped by the collector's clock, minus the allowed
    lateness; ``NO_WATERMARK`` before any event), the device states and a ``WakeupSchedule`` per
    partition, and calls the building blocks below. Tests run it on the in-memory runtime
    (tests/processors/sessions/helpers.py).

Per device (the building blocks)
    ``add_event(state | None, event, watermark_ms, policy) -> (state, outputs)``
    ``advance(state, watermark_ms, policy) -> (state, outputs)``
    ``flush(state, policy) -> (state, outputs)``: call ``advance`` to the partition watermark
    first, so visits it already ended keep their real rule.
    ``next_wakeup(state, policy) -> int | None``: lowest watermark at which ``advance`` outputs.
    ``DeviceState``: mutable, mutated in place; ``to_bytes()``/``from_bytes()`` and
    ``to_dict()``/``from_dict()`` for the table; ``is_idle``. ``WakeupSchedule``: the devices of a
    partition in a heap by their next wake-up (``set``, ``pop_due``), so a moving watermark visits
    only the devices it concerns.

Outputs, in event-time order per device
    ``Assignment(event, session_id)``: the event's FINAL session id (the worker sent the event on
    at arrival; an event still carrying a payload, saved by an older worker, is sent now);
    ``Session``: a closed visit, ``to_record()`` gives the ``schemas/session.avsc`` record;
    ``LateEvent(event, watermark_ms)``: older than the watermark: keep it flagged late, count it;
    ``DuplicateEvent(event_id)``: already taken; nothing changed.

Guarantees and their limits
    Same events in the same partition order, same watermark: same verdicts, visits and ids, on
    any replay or restart (persist the partition watermark with the states). An assignment is
    released only once the watermark has passed its event, about the allowed lateness of event
    time after it (the worker does not hold the event itself back for it). ``flush`` (the idle
    sweep) trades that determinism for timeliness: it publishes visits before their boundary, so
    a later event of the device starts a new visit, and one older than the flushed events is
    late. A redelivered event is a ``DuplicateEvent`` while its id is among the device's last
    ``policy.dedup_memory`` ids or it still waits in the buffer; an older redelivery of a
    released event is reported late.

Reference
    ``sessionize_batch(events, policy, final_watermark_ms=None) -> BatchResult`` (``.sessions``,
    ``.assignments``): the same policy over a complete history, written independently; the
    property test holds the stream to it.

Helpers: ``session_id_for(device_id, first_time_ms, first_event_id)``, ``to_ms``, ``from_ms``;
``Output`` is the union of the four output types.
"""

from processors.sessions.events import SessionEvent, session_id_for
from processors.sessions.policy import CloseRule, SessionPolicy, from_ms, to_ms
from processors.sessions.records import Assignment, DuplicateEvent, LateEvent, Output, Session
from processors.sessions.reference import BatchResult, sessionize_batch
from processors.sessions.schedule import WakeupSchedule
from processors.sessions.state import NO_WATERMARK, DeviceState
from processors.sessions.stream import add_event, advance, flush, next_wakeup

__all__ = [
    "NO_WATERMARK",
    "Assignment",
    "BatchResult",
    "CloseRule",
    "DeviceState",
    "DuplicateEvent",
    "LateEvent",
    "Output",
    "Session",
    "SessionEvent",
    "SessionPolicy",
    "WakeupSchedule",
    "add_event",
    "advance",
    "flush",
    "from_ms",
    "next_wakeup",
    "session_id_for",
    "sessionize_batch",
    "to_ms",
]
