"""Small builders for session tests: events at minute offsets, and a run over one partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from processors.sessions import (
    Assignment,
    LateEvent,
    Output,
    PartitionSessionizer,
    Session,
    SessionEvent,
    SessionPolicy,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MINUTE_MS = 60_000


def ev(event_id: str, minute: float, device: str = "d1", **fields: Any) -> SessionEvent:
    return SessionEvent(event_id, device, T0 + timedelta(minutes=minute), **fields)


def policy(**overrides: Any) -> SessionPolicy:
    """A policy in minutes: gap 5, lateness 5, max duration 60, unless overridden."""
    values: dict[str, Any] = {
        "gap_ms": 5 * MINUTE_MS,
        "allowed_lateness_ms": 5 * MINUTE_MS,
        "max_duration_ms": 60 * MINUTE_MS,
    }
    values.update(overrides)
    return SessionPolicy(**values)


def run(events: list[SessionEvent], pol: SessionPolicy) -> list[Output]:
    """Every output of feeding ``events`` in order to one partition, then flushing."""
    sessionizer = PartitionSessionizer(pol)
    return sessionizer.process_many(events) + sessionizer.flush()


def sessions(outputs: list[Output]) -> list[Session]:
    return [out for out in outputs if isinstance(out, Session)]


def assignments(outputs: list[Output]) -> dict[str, str]:
    return {out.event_id: out.session_id for out in outputs if isinstance(out, Assignment)}


def late_ids(outputs: list[Output]) -> list[str]:
    return [out.event.event_id for out in outputs if isinstance(out, LateEvent)]
