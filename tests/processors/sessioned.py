"""Each enriched event's visit, found as the ``events_sessioned`` view finds it.

The worker sends an event on at arrival with its session key and no session id; the visit that
holds it is the closed session of the same key whose (start, first event id) .. (end, last event
id) range holds the event's (time, id). One key's visits are disjoint in that order, so at most
one matches. Late events belong to no visit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def visits_of(
    enriched: Iterable[Mapping[str, Any]], sessions: Iterable[Mapping[str, Any]]
) -> dict[str, str | None]:
    """Message id -> session id (None: late, or its visit has not closed) of decoded records."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for session in sessions:
        by_key.setdefault(session["anonymous_id"], []).append(session)
    found: dict[str, str | None] = {}
    for record in enriched:
        enrichment = record["enrichment"]
        found[record["message_id"]] = enrichment["session_id"] or _visit(record, by_key)
    return found


def _visit(record: Mapping[str, Any], by_key: Mapping[str, list[Mapping[str, Any]]]) -> str | None:
    enrichment = record["enrichment"]
    key = enrichment.get("session_key")
    if key is None or enrichment["is_late"]:
        return None
    at = (enrichment["event_time"], record["message_id"])
    matches = [
        s["session_id"]
        for s in by_key.get(key, ())
        if (s["start"], s["first_event_id"]) <= at <= (s["end"], s["last_event_id"])
    ]
    assert len(matches) <= 1, f"event {record['message_id']} inside {len(matches)} visits of {key}"
    return matches[0] if matches else None
