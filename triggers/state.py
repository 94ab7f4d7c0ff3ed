"""Per-customer trigger state: profile, recent events, open absence windows, guardrail memory.

One ``CustomerState`` per profile key lives in the evaluate stage's ``trigger-states`` store (JSON,
with a changelog). Everything in it is bounded: recent events by the rules' longest window and a
count, alert ids by ``dedupe_retention_days``, daily counts by two days, and the state itself by
``state_ttl_days`` without an event. The engine owns the object it is handed and returns it; the
adapter writes it back to the store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.event_view import EventView
from pipeline.fingerprint import id_fingerprint
from pipeline.immutable import immutable
from triggers.profile import Profile


def _seen(data: dict[str, Any]) -> dict[str, None]:
    """The fingerprints of a stored state; a state stored before them kept the ids themselves."""
    if "seen" in data:
        return dict.fromkeys(data["seen"])
    return dict.fromkeys(map(id_fingerprint, data.get("seen_ids", [])))


@immutable
class PastEvent:
    """What past_events conditions and absence windows need of an event."""

    id: str
    name: str
    time: int
    product_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @classmethod
    def of(cls, event: EventView) -> PastEvent:
        return cls(event.message_id, event.name, event.time, event.product_ids, event.categories)

    def to_list(self) -> list[Any]:
        return [self.id, self.name, self.time, list(self.product_ids), list(self.categories)]

    @classmethod
    def from_list(cls, data: list[Any]) -> PastEvent:
        return cls(data[0], data[1], data[2], tuple(data[3]), tuple(data[4]))


@immutable
class Window:
    """An open absence window: the alert is rendered; it fires unless ``absent`` happens first."""

    alert_id: str
    rule_id: str
    start: int
    deadline: int
    absent: str  # event name whose arrival closes the window
    alert: dict[str, Any]  # the pending alert's fields (Alert, reasons as [condition, actual])

    def to_dict(self) -> dict[str, Any]:
        # Hand-built, as ``Profile.to_dict``: ``dataclasses.asdict`` deep-copies the alert.
        return {"alert_id": self.alert_id, "rule_id": self.rule_id, "start": self.start,
                "deadline": self.deadline, "absent": self.absent, "alert": dict(self.alert)}  # fmt: skip


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    profile: Profile
    history: list[PastEvent] = field(default_factory=list)
    # The fingerprints of the latest inputs' ids (``pipeline.fingerprint``), oldest first, against
    # replays: a dict for its order and its lookups.
    seen: dict[str, None] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)
    last_fired: dict[str, int] = field(default_factory=dict)  # rule id -> alert time
    daily: dict[str, int] = field(default_factory=dict)  # UTC day number -> fired marketing alerts
    emitted: dict[str, int] = field(default_factory=dict)  # alert id -> alert time
    partition: int | None = None  # Kafka partition that owns this key (for the sweep)
    # Consent changes in event time, oldest first: (time, purpose, granted). A guardrail asks for
    # the consent in force at an alert's time, so the answer does not depend on how far the
    # stream had got when the alert was decided.
    consents: list[tuple[int, str, bool]] = field(default_factory=list)
    # Set on a device key whose state was handed over to its customer: what still arrives under
    # the device's key (a session that closed before the sign-in was read, a late event) is
    # passed on to the customer instead of starting a second, orphaned profile.
    moved_to: str | None = None
    linked_at: int | None = None  # with ``moved_to``: event time the device was linked
    # Order ids counted in this profile, latest last: a client's retry of ``Order Completed`` (a
    # fresh message id, the same order id) is the same business fact and counts once.
    order_ids: list[str] = field(default_factory=list)
    # The profile changed since its last published version (a change not worth a version of its
    # own); the next full sweep, and the end of input, publish it, so the latest version is the
    # final profile whatever order the inputs came in.
    unpublished: bool = False
    # Sessions made of imported events (history, not live traffic): their marketing alerts are
    # never decided, however the session and its events were interleaved.
    imported_sessions: list[str] = field(default_factory=list)
    # An anonymous device's state (its inputs wait only for the upstream clock: ``triggers.hold``).
    device: bool = False
    # The last event-time hour whose scheduled rules were decided for this state (ms).
    hour: int | None = None
    # Scheduled rule id -> the anchor (last event id) it has held for. A scheduled rule decides
    # once per anchor: its alert id comes from the anchor, so after the emitted ids are pruned a
    # still-silent customer would otherwise get the same alert id again.
    scheduled: dict[str, str] = field(default_factory=dict)
    # The version of the scheduled rules (``Engine.schedule_version``) that last looked at this
    # state as it stands; None once an input changed it. Until then an hour can only bring what
    # the passing days bring (``Engine.next_hour``).
    schedule_seen: str | None = None

    @classmethod
    def new(cls, customer_id: str) -> CustomerState:
        return cls(customer_id, Profile(customer_id))

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "profile": self.profile.to_dict(),
            "history": [e.to_list() for e in self.history],
            "seen": list(self.seen),
            "windows": [w.to_dict() for w in self.windows],
            "last_fired": dict(self.last_fired),
            "daily": dict(self.daily),
            "emitted": dict(self.emitted),
            "partition": self.partition,
            "consents": [list(c) for c in self.consents],
            "moved_to": self.moved_to,
            "linked_at": self.linked_at,
            "order_ids": list(self.order_ids),
            "unpublished": self.unpublished,
            "imported_sessions": list(self.imported_sessions),
            "device": self.device,
            "hour": self.hour,
            "scheduled": dict(self.scheduled),
            "schedule_seen": self.schedule_seen,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerState:
        return cls(
            customer_id=data["customer_id"],
            profile=Profile.from_dict(data["profile"]),
            history=[PastEvent.from_list(e) for e in data.get("history", [])],
            seen=_seen(data),
            windows=[Window(**w) for w in data.get("windows", [])],
            last_fired=dict(data.get("last_fired", {})),
            daily=dict(data.get("daily", {})),
            emitted=dict(data.get("emitted", {})),
            partition=data.get("partition"),
            consents=[(int(t), str(p), bool(g)) for t, p, g in data.get("consents", [])],
            moved_to=data.get("moved_to"),
            linked_at=data.get("linked_at"),
            order_ids=list(data.get("order_ids", [])),
            unpublished=bool(data.get("unpublished", False)),
            imported_sessions=list(data.get("imported_sessions", [])),
            device=bool(data.get("device", False)),
            hour=data.get("hour"),
            scheduled=dict(data.get("scheduled", {})),
            schedule_seen=data.get("schedule_seen"),
        )

    @classmethod
    def forwarding(
        cls, key: str, customer_id: str, linked_at: int | None, device: CustomerState | None, partition: int
    ) -> CustomerState:
        """What stays under a device key once its state lives with ``customer_id``: where to, since
        when, and what the device alone knew (consent, awaited events, ids seen), so that an input
        from before the link that is read after it is judged as it would have been in time. Its
        partition puts it in the sweep's index, which drops it ``triggers.state_ttl_days`` after
        the link."""
        state = cls.new(key)
        state.moved_to, state.linked_at, state.partition = customer_id, linked_at, partition
        if device is not None:
            state.consents, state.history = list(device.consents), list(device.history)
            state.seen, state.emitted = dict(device.seen), dict(device.emitted)
            state.order_ids = list(device.order_ids)
            state.imported_sessions = list(device.imported_sessions)
        return state

    def device_copy(self) -> CustomerState:
        """A fresh device state holding only the knowledge a forwarding marker kept."""
        copy = CustomerState.new(self.customer_id)
        copy.consents, copy.history = list(self.consents), list(self.history)
        copy.seen, copy.emitted = dict(self.seen), dict(self.emitted)
        copy.order_ids = list(self.order_ids)
        copy.imported_sessions = list(self.imported_sessions)
        return copy

    def count_order(self, order_id: str | None, keep: int) -> bool:
        """Remember an order id; False when it was counted already (a retried order)."""
        if order_id is None:
            return True
        if order_id in self.order_ids:
            return False
        self.order_ids.append(order_id)
        del self.order_ids[:-keep]
        return True

    def record_consent(self, time: int, purposes: tuple[str, ...], granted: bool, keep: int) -> None:
        """Add consent changes in time order; keep the latest ``keep`` of each purpose (older ones
        are superseded). Kept per purpose, not in all: changes of other purposes pushed a
        withdrawal out, and the consent default answered in its place."""
        merged = sorted({*self.consents, *((time, p, granted) for p in purposes)})
        per_purpose: Counter[str] = Counter(purpose for _, purpose, _ in merged)
        if max(per_purpose.values(), default=0) > keep:
            kept = []
            for change in merged:  # oldest first: a purpose's first changes go while it has too many
                if per_purpose[change[1]] > keep:
                    per_purpose[change[1]] -= 1
                else:
                    kept.append(change)
            merged = kept
        self.consents = merged

    def consent_at(self, purpose: str, time: int) -> bool | None:
        """The consent for ``purpose`` in force at event time ``time``; None if never given or refused."""
        answer = None
        for at, name, granted in self.consents:
            if at > time:
                break
            if name == purpose:
                answer = granted
        return answer
