"""Enriched-event-shaped and session-shaped Avro dicts for trigger tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.event_view import to_ms
from pipeline.settings import Settings, TriggerSettings
from tools.local_pipeline import LocalPipeline
from triggers.alerts import Alert
from triggers.ruleset import RuleSet, load_rules
from triggers.state import CustomerState, Window

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES_DIR = Path(__file__).resolve().parents[2] / "triggers" / "rules"
_ids = itertools.count(1)


def at(minutes: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


def ms(when: datetime | int) -> int:
    """``to_ms`` of a time that is there (only ``to_ms(None)`` is None)."""
    return to_ms(when)


class StageHarness:
    """The trigger stages (route, evaluate) on the in-memory runtime (``tools.local_pipeline``), fed
    enriched events and closed sessions in event-time order, as one enriched partition the worker
    writes: before each input, its time becomes the stages' clock (the worker's progress report,
    nothing older follows), so windows due by then are decided; after it, the clock moves just
    past what the input vouches for (an event's time, a visit's end plus the inactivity gap), so the
    evaluate stage, which holds inputs until the clock has passed them, applies it. Each call runs
    the stages until everything is read and returns the alerts decided meanwhile."""

    def __init__(self, rules: RuleSet, settings: TriggerSettings) -> None:
        self.local = LocalPipeline(Settings(triggers=settings), rules, worker=False)
        self.clock: int | None = None

    def _at(self, ms: int | None) -> None:
        if ms is not None and (self.clock is None or ms > self.clock):
            self.local.advance(ms)
            self.clock = ms

    def event(self, record: dict[str, Any]) -> list[Alert]:
        """One enriched event (Avro dict)."""
        time = to_ms(record["enrichment"]["event_time"])
        self._at(time)
        self.local.enriched(record)
        self._at(None if time is None else time + 1)
        return self.local.run()

    def session(self, record: dict[str, Any]) -> list[Alert]:
        """One closed session (Avro dict)."""
        end = to_ms(record["end"])
        self._at(end)
        self.local.session(record)
        gap_ms = self.local.settings.worker.session.inactivity_gap_s * 1000
        self._at(None if end is None else end + gap_ms + 1)
        return self.local.run()

    def sweep(self, now: int | None = None) -> list[Alert]:
        """The clock moved to event time ``now`` (default: where it is) and the stages' timers."""
        self._at(now)
        return self.local.run()

    def restart(self) -> None:
        """Every stage rebuilt from its changelogs, as after a crash."""
        for runner in self.local.runners:
            runner.restart()

    def reload(self, rules: RuleSet) -> None:
        """New rules, as the evaluate stage's timer loads an edited rules directory; state is kept."""
        self.local.rules = rules
        self.local.evaluate.stage.core.reload(rules)  # type: ignore[attr-defined]

    @property
    def states(self) -> dict[str, CustomerState]:
        return self.local.states()

    @property
    def alerts(self) -> list[Alert]:
        return self.local.alerts

    def pending(self) -> list[Window]:
        return self.local.pending()


def harness(only: str | None = None, **settings: Any) -> StageHarness:
    rules = load_rules(RULES_DIR)
    if only:
        rules = rules.only(only)
    return StageHarness(rules, TriggerSettings(rules_dir=RULES_DIR, **settings))


def event(
    name: str,
    when: datetime,
    customer: str | None = "c-1",
    *,
    anon: str = "a-1",
    call: str = "track",
    channel: str = "web",
    products: list[str] | None = None,
    category: str = "books",
    revenue: float | None = None,
    order_id: str | None = None,
    purposes: list[str] | None = None,
    link_url: str | None = None,
    is_bot: bool = False,
    message_id: str | None = None,
) -> dict[str, Any]:
    """An enriched customer_event dict (only the fields triggers read are filled)."""
    commerce = None
    if products is not None or revenue is not None or order_id is not None:
        commerce = {
            "order_id": order_id,
            "revenue": revenue,
            "products": [{"product_id": p, "category": category} for p in products or []],
        }
    return {
        "message_id": message_id or f"m-{next(_ids)}",
        "type": call,
        "event": name if call == "track" else None,
        "channel": channel,
        "anonymous_id": anon,
        "user_id": customer,
        "timestamp": when,
        "received_at": when,
        "context": {},
        "commerce": commerce,
        "email": {"campaign_id": "cmp-1", "link_url": link_url} if link_url else None,
        "consent": {"purposes": purposes} if purposes is not None else None,
        "properties": {},
        "enrichment": {"event_time": when, "customer_id": customer, "session_id": None, "is_bot": is_bot},
    }


def consent(when: datetime, customer: str = "c-1", granted: bool = True, **kw: Any) -> dict[str, Any]:
    name = "Consent Granted" if granted else "Consent Withdrawn"
    return event(name, when, customer, channel="server", purposes=["marketing_email"], **kw)


def order(when: datetime, customer: str | None = "c-1", revenue: float = 50.0, **kw: Any) -> dict[str, Any]:
    kw.setdefault("products", ["p-1"])
    kw.setdefault("order_id", f"o-{next(_ids)}")
    return event("Order Completed", when, customer, revenue=revenue, **kw)


def session(
    start: datetime,
    end: datetime,
    customer: str | None = "c-1",
    *,
    anon: str = "a-1",
    added: list[str] | None = None,
    bought: list[str] | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """A closed session dict (schemas/session.avsc)."""
    return {
        "session_id": session_id or f"s-{next(_ids)}",
        "anonymous_id": anon,
        "customer_id": customer,
        "start": start,
        "end": end,
        "duration_ms": int((end - start).total_seconds() * 1000),
        "event_count": 5,
        "page_view_count": 3,
        "first_event_id": "m-first",
        "last_event_id": "m-last",
        "products_viewed": [],
        "products_added": added or [],
        "products_bought": bought or [],
        "revenue": 0.0,
        "converted": bool(bought),
        "bounce": False,
        "closed_by": "inactivity",
    }


def summary(alerts: list[Any]) -> list[tuple[str, str, str | None]]:
    return [(a.rule_id, a.status, a.suppression_reason) for a in alerts]
