"""In-memory runner of the engine: what the faust agents do, in one process, on a dict.

Tests and ``webhouse triggers test`` feed it enriched events and closed sessions (Avro
dicts) in log order; it keeps the states keyed by customer, merges an anonymous state
into the customer's as soon as an event links the two (the worker does the same
through a hand-over message on the triggers topic), and sweeps at an explicit
event-time ``now``.

``RawReplay`` stands in for the processors when the input is raw Segment events (the
CLI's case): event time from the payload, stitching by ``user_id`` seen on the
device, and sessions cut at the inactivity gap only. It is an approximation of
processors/ for trying rules, not a second implementation of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triggers.alerts import Alert
from triggers.engine import Engine, Outcome
from triggers.events import ORDER_EVENT, EventView, event_view, session_view, to_ms
from triggers.state import CustomerState, Window


class Harness:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.states: dict[str, CustomerState] = {}
        self.alerts: list[Alert] = []
        self.profiles_changed: list[str] = []
        self.now = 0

    def _keep(self, outcome: Outcome) -> list[Alert]:
        self.states[outcome.state.customer_id] = outcome.state
        if outcome.profile_changed:
            self.profiles_changed.append(outcome.state.customer_id)
        self.alerts.extend(outcome.alerts)
        return list(outcome.alerts)

    def _stitch(self, anonymous_id: str | None, customer_id: str) -> list[Alert]:
        if not anonymous_id or anonymous_id == customer_id or anonymous_id not in self.states:
            return []
        other = self.states.pop(anonymous_id)
        return self._keep(self.engine.absorb(self.states.get(customer_id), other, customer_id))

    def event(self, record: dict[str, Any]) -> list[Alert]:
        """One enriched event (Avro dict)."""
        view = event_view(record)
        return [] if view is None else self.view(view)

    def view(self, view: EventView) -> list[Alert]:
        alerts = self._stitch(view.anonymous_id, view.customer_id)
        self.now = max(self.now, view.time)
        alerts += self._close_due(view.customer_id, view.time)
        alerts += self._keep(self.engine.on_event(self.states.get(view.customer_id), view))
        return alerts + self._close_due(view.customer_id, view.time)  # its held marketing alerts

    def _close_due(self, customer_id: str, now: int) -> list[Alert]:
        """The log is in event-time order, so an input's time is this harness's watermark."""
        state = self.states.get(customer_id)
        return [] if state is None else self._keep(self.engine.close_due(state, now))

    def session(self, record: dict[str, Any]) -> list[Alert]:
        """One closed session (Avro dict)."""
        view = session_view(record)
        alerts = self._stitch(view.anonymous_id, view.customer_id)
        self.now = max(self.now, view.end)
        alerts += self._close_due(view.customer_id, view.end)
        alerts += self._keep(self.engine.on_session(self.states.get(view.customer_id), view))
        return alerts + self._close_due(view.customer_id, view.end)

    def sweep(self, now: int | None = None) -> list[Alert]:
        """The scheduled sweep at event time ``now`` (default: the latest event time seen)."""
        at = self.now if now is None else now
        alerts: list[Alert] = []
        for key in list(self.states):
            alerts += self._keep(self.engine.sweep(self.states[key], at))
        return alerts

    def pending(self) -> list[Window]:
        return [w for s in self.states.values() for w in s.windows]


@dataclass(slots=True)
class _OpenVisit:
    anonymous_id: str
    customer_id: str | None
    start: int
    end: int
    first_event_id: str
    last_event_id: str
    events: int = 0
    page_views: int = 0
    viewed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    bought: list[str] = field(default_factory=list)
    revenue: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "session_id": f"{self.anonymous_id}:{self.start}",
            "anonymous_id": self.anonymous_id,
            "customer_id": self.customer_id,
            "start": self.start,
            "end": self.end,
            "last_event_id": self.last_event_id,
            "event_count": self.events,
            "page_view_count": self.page_views,
            "products_viewed": self.viewed,
            "products_added": self.added,
            "products_bought": self.bought,
            "revenue": self.revenue,
            "converted": bool(self.bought) or self.revenue > 0,
        }


class RawReplay:
    """Raw customer events -> enriched-enough events and gap-cut sessions -> a Harness."""

    def __init__(self, harness: Harness, inactivity_gap_s: int) -> None:
        self.harness = harness
        self.gap_ms = inactivity_gap_s * 1000
        self.links: dict[str, str] = {}
        self.visits: dict[str, _OpenVisit] = {}

    def event(self, record: dict[str, Any]) -> list[Alert]:
        anonymous_id, user_id = record.get("anonymous_id"), record.get("user_id")
        if anonymous_id and user_id:
            self.links[anonymous_id] = user_id
        customer_id = user_id or (self.links.get(anonymous_id) if anonymous_id else None)
        when = to_ms(record.get("timestamp") or record["received_at"]) or 0
        enriched = {**record, "enrichment": {"event_time": when, "customer_id": customer_id}}
        alerts = self.close_idle(when)
        view = event_view(enriched)
        if view is None:
            return alerts
        alerts += self.harness.view(view)
        if anonymous_id:
            self._visit(anonymous_id, customer_id, view)
        return alerts

    def _visit(self, anonymous_id: str, customer_id: str | None, view: EventView) -> None:
        visit = self.visits.get(anonymous_id)
        if visit is None:
            visit = _OpenVisit(
                anonymous_id, customer_id, view.time, view.time, view.message_id, view.message_id
            )
            self.visits[anonymous_id] = visit
        visit.customer_id = customer_id or visit.customer_id
        visit.end = max(visit.end, view.time)
        visit.last_event_id = view.message_id
        visit.events += 1
        visit.page_views += view.call_type in ("page", "screen")
        if view.name == "Product Viewed":
            visit.viewed.extend(view.product_ids)
        if view.name == "Product Added":
            visit.added.extend(view.product_ids)
        if view.name == ORDER_EVENT:
            visit.bought.extend(view.product_ids)
            visit.revenue += view.revenue or 0.0

    def close_idle(self, now: int) -> list[Alert]:
        """Close the visits idle for the inactivity gap as of ``now``, oldest first."""
        due = sorted((v for v in self.visits.values() if v.end + self.gap_ms <= now), key=lambda v: v.end)
        alerts: list[Alert] = []
        for visit in due:
            del self.visits[visit.anonymous_id]
            alerts += self.harness.session(visit.record())
        return alerts

    def finish(self, now: int) -> list[Alert]:
        """End of input: close what is idle at ``now`` and sweep at ``now``."""
        return self.close_idle(now) + self.harness.sweep(now)
