"""Identity stitching: which customer is behind a device (anonymous id), and since when.

Pure functions over a small per-device state; the worker keeps that state in a
state store keyed by anonymous id and sends changed links to the compacted
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
- An alias (previous id -> user id, the Segment spec) links the previous id to the
  user id; without an anonymous id it changes no device state here: that device's
  state lives with its own key, on its own partition.

Guards (``IdentityGuard``), as Segment's identity resolution has them:
- a blocklist of junk values (``undefined``, ``null``, ``0``, placeholders...): such
  an id is treated as absent: it links nothing and is nobody's customer id;
- a limit on distinct devices linked to one customer within a sliding window of
  event time (Segment's default for anonymous ids: 5 weekly). The count is over the
  devices of one partition (``CustomerDevices``): the worker's state is partitioned
  by device, so that is what it can count exactly (docs/identity.md).
A refused link is a ``Rejection``; each device reports a given refusal once.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.immutable import immutable

if TYPE_CHECKING:
    from pipeline.settings import WorkerSettings

_SOURCE_TYPES = {"identify": "identify", "alias": "alias"}
_REJECTED_MEMORY = 16  # refusals a device remembers, so each is reported once


@immutable
class IdentityGuard:
    """Which ids never link, how many devices one customer may gather in a window, and how many
    customers one device may link."""

    blocked_values: frozenset[str] = frozenset()  # compared trimmed and case-folded
    blocked_patterns: tuple[re.Pattern[str], ...] = ()  # full matches of the trimmed value
    device_limit: int = 0  # 0: no limit
    device_window: timedelta = timedelta(days=7)
    customer_limit: int = 0  # 0: no limit

    @classmethod
    def from_settings(cls, worker: WorkerSettings) -> IdentityGuard:
        return cls(
            frozenset(v.strip().casefold() for v in worker.identity_blocked_values),
            tuple(re.compile(p) for p in worker.identity_blocked_patterns),
            worker.identity_device_limit,
            timedelta(seconds=worker.identity_device_window_s),
            worker.identity_customer_limit,
        )

    def is_blocked(self, value: str) -> bool:
        trimmed = value.strip()
        if not trimmed or trimmed.casefold() in self.blocked_values:
            return True
        return any(p.fullmatch(trimmed) for p in self.blocked_patterns)


NO_GUARD = IdentityGuard()


@immutable
class Rejection:
    """A link the guards refused: the worker counts it and records it as a dead letter."""

    rule: str  # blocklist, device_limit, customer_limit
    field: str  # the id that broke the rule: user_id, anonymous_id, previous_id
    value: str  # its value (device_limit: the customer's user id; the device is ``anonymous_id``)
    anonymous_id: str | None
    customer_id: str | None
    linked_devices: int | None = None  # device_limit: devices already linked within the window
    linked_customers: int | None = None  # customer_limit: customers the device has linked

    @property
    def memo(self) -> str:
        return f"{self.rule}|{self.field}|{self.value.strip().casefold()}"

    def detail(self) -> str:
        """The dead letter's detail: JSON, so the ``identity_conflicts`` view can read it."""
        return json.dumps(
            {
                "rule": self.rule,
                "field": self.field,
                "value": self.value,
                "anonymous_id": self.anonymous_id,
                "customer_id": self.customer_id,
                "linked_devices": self.linked_devices,
                "linked_customers": self.linked_customers,
            },
            separators=(",", ":"),
        )


@immutable
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


@immutable
class IdentityState:
    """Per device: its links, the sign-in timeline (event time, customer), oldest first, and the
    refusals already reported (``Rejection.memo``)."""

    links: tuple[Link, ...] = ()
    timeline: tuple[tuple[datetime, str], ...] = ()
    rejected: tuple[str, ...] = ()

    def customer_at(self, when: datetime) -> str | None:
        times = [t for t, _ in self.timeline]
        i = bisect.bisect_right(times, when)
        return self.timeline[i - 1][1] if i else None

    @property
    def is_empty(self) -> bool:
        return not self.links and not self.rejected

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "links": [
                [lk.customer_id, _ms(lk.first_seen), _ms(lk.last_seen), lk.source_event_id, lk.source_type]
                for lk in self.links
            ],
            "timeline": [[_ms(t), c] for t, c in self.timeline],
            "anonymous_id": self.links[0].anonymous_id if self.links else None,
        }
        if self.rejected:
            data["rejected"] = list(self.rejected)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IdentityState:
        anon = data.get("anonymous_id") or ""
        links = tuple(Link(anon, c, _dt(f), _dt(la), e, s) for c, f, la, e, s in data.get("links", ()))
        timeline = tuple((_dt(t), c) for t, c in data.get("timeline", ()))
        return cls(links, timeline, tuple(data.get("rejected", ())))


class CustomerDevices:
    """One partition's reverse index: customer -> the devices linked to it, with their last seen.

    Rebuilt from the device states (``add_state``) and kept current as links change; the
    device-limit guard counts in it, and server-side events find their customer's devices in it.
    It also knows each device's customers, so that a device's expiry touches only those: a scan
    of every customer per expired device made the expiry quadratic (``bench/device_expiry.py``:
    20,000 devices among 40,000 customers took 42 CPU-s; a replay's jump in event time expires a
    whole cohort at once, and a 10M-event run's worker loop stalled past two minutes there). A
    customer left with no device is dropped, so the index holds only what it can still use.
    """

    def __init__(self) -> None:
        self._by_customer: dict[str, dict[str, datetime]] = {}
        self._by_device: dict[str, set[str]] = {}

    def __len__(self) -> int:
        """Customers with at least one device."""
        return len(self._by_customer)

    def add(self, link: Link) -> None:
        self.add_seen(link.customer_id, link.anonymous_id, link.last_seen)

    def add_seen(self, customer_id: str, device_id: str, last_seen: datetime) -> None:
        devices = self._by_customer.setdefault(customer_id, {})
        seen = devices.get(device_id)
        if seen is None:
            self._by_device.setdefault(device_id, set()).add(customer_id)
        if seen is None or last_seen > seen:
            devices[device_id] = last_seen

    def add_state(self, state: IdentityState) -> None:
        for link in state.links:
            self.add(link)

    def devices(self, customer_id: str) -> Iterator[str]:
        return iter(self._by_customer.get(customer_id, ()))

    def forget_device(self, device_id: str) -> None:
        """A device whose state expired: no customer lists it any more (its links stay on the topic)."""
        for customer_id in self._by_device.pop(device_id, ()):
            devices = self._by_customer[customer_id]
            del devices[device_id]
            if not devices:
                del self._by_customer[customer_id]

    def drop(self, ids: set[str]) -> None:
        """Forget these customers and devices (an erasure): no link to or from them is left."""
        for device_id in ids & self._by_device.keys():
            self.forget_device(device_id)
        for customer_id in ids & self._by_customer.keys():
            for device_id in self._by_customer.pop(customer_id):
                customers = self._by_device[device_id]
                customers.discard(customer_id)
                if not customers:
                    del self._by_device[device_id]

    def recent(self, customer_id: str, since: datetime, exclude: str) -> int:
        """Devices other than ``exclude`` linked to the customer and seen after ``since``."""
        devices = self._by_customer.get(customer_id, {})
        return sum(1 for device, seen in devices.items() if seen > since and device != exclude)


@immutable
class Stitched:
    state: IdentityState
    customer_id: str | None  # for this event
    changed: tuple[Link, ...]  # links to emit
    state_changed: bool
    rejections: tuple[Rejection, ...] = ()  # every refusal of this event (for the metrics)
    reported: tuple[Rejection, ...] = ()  # those not reported before (for dead letters)
    anonymous_id: str | None = None  # the event's anonymous id unless the guards refused it
    user_id: str | None = None  # the event's user id unless the guards refused it
    # The customer limit refused to link the device: the event is its user's, not the device's.
    device_shared: bool = False


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


@dataclass(slots=True)
class _Ids:
    """The event's ids after the blocklist, and what it refused."""

    anonymous_id: str | None
    user_id: str | None
    previous_id: str | None
    rejections: list[Rejection] = field(default_factory=list)


def _screen(event: Mapping[str, Any], guard: IdentityGuard) -> _Ids:
    raw = {name: event.get(name) for name in ("anonymous_id", "user_id", "previous_id")}
    kept: dict[str, str | None] = {}
    blocked: list[tuple[str, str]] = []
    for name, value in raw.items():
        if not value:  # absent (an empty string is how some clients say "not set")
            kept[name] = None
        elif guard.is_blocked(value):
            kept[name] = None
            blocked.append((name, value))
        else:
            kept[name] = value
    ids = _Ids(kept["anonymous_id"], kept["user_id"], kept["previous_id"])
    if not raw["user_id"] and not raw["previous_id"]:
        return ids  # nothing tried to link: a lone junk anonymous id is simply not a device
    for name, value in blocked:
        ids.rejections.append(
            Rejection("blocklist", name, value, raw["anonymous_id"], raw["user_id"] or None)
        )
    return ids


def stitch(
    state: IdentityState,
    event: Mapping[str, Any],
    event_time: datetime,
    identity_events: Sequence[str] = ("Signed In", "Signed Up"),
    history: int = 16,
    guard: IdentityGuard = NO_GUARD,
    linked: CustomerDevices | None = None,
) -> Stitched:
    """Apply one event to the device's identity state.

    ``linked`` is the partition's customer index, for the device limit (no limit without it).
    """
    ids = _screen(event, guard)
    user_id, anonymous_id = ids.user_id, ids.anonymous_id
    source = link_source(event, identity_events)
    changed: list[Link] = []
    previous = ids.previous_id
    if source == "alias" and user_id and previous and previous not in (user_id, anonymous_id):
        changed.append(Link(previous, user_id, event_time, event_time, event["message_id"], "alias"))
    if user_id is None or anonymous_id is None:
        customer = user_id if user_id is not None else state.customer_at(event_time)
        return _result(state, state, customer, changed, ids)

    links = list(state.links)
    existing = next((i for i, lk in enumerate(links) if lk.customer_id == user_id), None)
    if existing is None:
        over = _over_limit(linked, guard, user_id, anonymous_id, event_time)
        if over is not None:
            ids.rejections.append(Rejection("device_limit", "user_id", user_id, anonymous_id, user_id, over))
            return _result(state, state, None, changed, ids)
        if 0 < guard.customer_limit <= len(links):  # a shared device: the user id is still theirs
            ids.rejections.append(Rejection("customer_limit", "anonymous_id", anonymous_id, anonymous_id,
                                            user_id, linked_customers=len(links)))  # fmt: skip
            return replace(_result(state, state, user_id, changed, ids), device_shared=True)
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

    new_state = IdentityState(tuple(links), _signed_in(state.timeline, event_time, user_id, history),
                              state.rejected)  # fmt: skip
    return _result(state, new_state, user_id, changed, ids)


def _signed_in(timeline: tuple[tuple[datetime, str], ...], when: datetime, customer_id: str,
               history: int) -> tuple[tuple[datetime, str], ...]:  # fmt: skip
    """The timeline with a sign-in of ``customer_id`` at ``when``.

    Of each run of sign-ins by one customer only the first and the last are kept: a customer's
    every event carries their id, so runs are long, and the last entry still marks that the
    customer was (again) signed in then, should another's earlier sign-in arrive late. The
    oldest entries beyond ``history`` are dropped.
    """
    entry = (when, customer_id)
    if entry in timeline:
        return timeline
    entries = list(timeline)
    bisect.insort(entries, entry)
    kept = [
        e
        for i, e in enumerate(entries)
        if not (0 < i < len(entries) - 1 and entries[i - 1][1] == e[1] == entries[i + 1][1])
    ]
    return tuple(kept[-history:])


def _over_limit(linked: CustomerDevices | None, guard: IdentityGuard, customer_id: str, anonymous_id: str,
                event_time: datetime) -> int | None:  # fmt: skip
    """The devices already linked in the window, if one more would break the limit."""
    if linked is None or guard.device_limit <= 0:
        return None
    count = linked.recent(customer_id, event_time - guard.device_window, anonymous_id)
    return count if count >= guard.device_limit else None


def _result(old: IdentityState, state: IdentityState, customer_id: str | None, changed: list[Link],
            ids: _Ids) -> Stitched:  # fmt: skip
    """Remember new refusals on a device (so each is reported once) and build the outcome."""
    rejections = tuple(ids.rejections)
    reported = rejections
    if ids.anonymous_id is not None and rejections:
        memos = set(state.rejected)
        reported = tuple(r for r in rejections if r.memo not in memos)
        if reported:
            remembered = (*state.rejected, *(r.memo for r in reported))[-_REJECTED_MEMORY:]
            state = replace(state, rejected=remembered)
    return Stitched(
        state, customer_id, tuple(changed), state != old, rejections, reported, ids.anonymous_id, ids.user_id
    )
