"""Identity stitching: which customer is behind a device (anonymous id), and since when.

Pure functions over a small per-device state; the worker keeps that state in a
faust table keyed by anonymous id and sends changed links to the compacted
identity topic (schemas/identity_link.avsc, key = anonymous id + customer id).

Rules:
- An identify or alias call, a configured sign-in track event ("Signed In",
  "Signed Up"), or any event carrying both ids links the anonymous id to the
  user id. Each (device, customer) pair is one link with first and last seen
  (event time) and the event that first made it. A link is emitted when it is
  new or its first/last seen moves.
- An event's customer id is its own user id when it has one; otherwise the
  customer signed in on the device at the event's time: the device keeps a short
  timeline of sign-ins, so on a shared device the latest sign-in before the event
  wins, and a late event is attributed to whoever was signed in *then*.
- One customer on several devices is simply several links (one per device);
  links are never dropped, so the webhouse can attribute earlier anonymous
  events of every device afterwards.
- An alias without an anonymous id (previous id -> user id) is emitted as a link
  but changes no device state here: that device's state lives with its own key.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

_SOURCE_TYPES = {"identify": "identify", "alias": "alias"}


@dataclass(frozen=True, slots=True)
class Link:
    anonymous_id: str
    customer_id: str
    first_seen: datetime
    last_seen: datetime
    source_event_id: str
    source_type: str  # identify, alias, signed_in, signed_up, event

    @property
    def key(self) -> str:
        """Compacted-topic key: one record per (device, customer) pair."""
        return f"{self.anonymous_id}|{self.customer_id}"

    def to_record(self) -> dict[str, Any]:
        """The Avro record of schemas/identity_link.avsc."""
        return {
            "anonymous_id": self.anonymous_id,
            "customer_id": self.customer_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "source_event_id": self.source_event_id,
            "source_type": self.source_type,
        }


@dataclass(frozen=True, slots=True)
class IdentityState:
    """Per device: its links, and the sign-in timeline (event time, customer), oldest first."""

    links: tuple[Link, ...] = ()
    timeline: tuple[tuple[datetime, str], ...] = ()

    def customer_at(self, when: datetime) -> str | None:
        times = [t for t, _ in self.timeline]
        i = bisect.bisect_right(times, when)
        return self.timeline[i - 1][1] if i else None

    def to_json(self) -> dict[str, Any]:
        return {
            "links": [
                [lk.customer_id, _ms(lk.first_seen), _ms(lk.last_seen), lk.source_event_id, lk.source_type]
                for lk in self.links
            ],
            "timeline": [[_ms(t), c] for t, c in self.timeline],
            "anonymous_id": self.links[0].anonymous_id if self.links else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IdentityState:
        anon = data.get("anonymous_id") or ""
        links = tuple(Link(anon, c, _dt(f), _dt(la), e, s) for c, f, la, e, s in data.get("links", ()))
        return cls(links, tuple((_dt(t), c) for t, c in data.get("timeline", ())))


@dataclass(frozen=True, slots=True)
class Stitched:
    state: IdentityState
    customer_id: str | None  # for this event
    changed: tuple[Link, ...]  # links to emit
    state_changed: bool


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def link_source(event: Mapping[str, Any], identity_events: Sequence[str]) -> str | None:
    """Why this event links its ids (None: it does not, beyond carrying both)."""
    call = event.get("type")
    if call in _SOURCE_TYPES:
        return _SOURCE_TYPES[call]
    name = event.get("event")
    if call == "track" and name in identity_events:
        return str(name).strip().lower().replace(" ", "_")
    return None


def stitch(
    state: IdentityState,
    event: Mapping[str, Any],
    event_time: datetime,
    identity_events: Sequence[str] = ("Signed In", "Signed Up"),
    history: int = 16,
) -> Stitched:
    """Apply one event to the device's identity state."""
    user_id = event.get("user_id") or None
    anonymous_id = event.get("anonymous_id") or None
    source = link_source(event, identity_events)
    if user_id is None:
        return Stitched(state, state.customer_at(event_time), (), False)
    if anonymous_id is None:
        previous = event.get("previous_id")
        if source == "alias" and previous and previous != user_id:
            link = Link(previous, user_id, event_time, event_time, event["message_id"], "alias")
            return Stitched(state, user_id, (link,), False)
        return Stitched(state, user_id, (), False)

    links = list(state.links)
    changed: list[Link] = []
    existing = next((i for i, lk in enumerate(links) if lk.customer_id == user_id), None)
    if existing is None:
        link = Link(anonymous_id, user_id, event_time, event_time, event["message_id"], source or "event")
        links.append(link)
        changed.append(link)
    else:
        old = links[existing]
        new = replace(
            old, first_seen=min(old.first_seen, event_time), last_seen=max(old.last_seen, event_time)
        )
        if new != old:
            links[existing] = new
            changed.append(new)

    timeline = list(state.timeline)
    if state.customer_at(event_time) != user_id:
        # A switch to this customer at this time; later switches stay where they are.
        bisect.insort(timeline, (event_time, user_id))
        timeline = timeline[-history:]
    new_state = IdentityState(tuple(links), tuple(timeline))
    return Stitched(new_state, user_id, tuple(changed), new_state != state)
