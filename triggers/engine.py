"""The rule engine: pure functions of (customer state, input) -> (state, alerts).

Four inputs move a customer's state, each with its own clock taken from the data:
- ``on_event``: an enriched event (its corrected event time),
- ``on_session``: a closed session (its end),
- ``sweep``: a scheduled check whose ``now`` is an argument (the latest event time
  the worker has seen), so replays and tests give the same answer,
- ``absorb``: an anonymous profile merged into the customer's on stitching.

Each input first closes absence windows that are due (``deadline + grace <= now``)
or that the input itself cancels, then updates the profile, then runs the rules of
its source, then the profile-change rules if the profile changed in substance.
Every alert passes the guardrails (guardrails.py) before it leaves.

History is not live: an imported event (``$imported``, the collector's import endpoint) feeds
the profile and the history rules look back on, but starts no marketing alert, and neither does
a session holding an imported event (flagged ``imported`` by the worker; an event the worker
sent on before this flag existed carried its session id, remembered here; a held or absence
window of such a session is dropped when it comes due, whichever of the two was read first).
Service rules still run on history.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from typing import Any

from pipeline.event_view import EventView
from pipeline.fingerprint import id_fingerprint
from pipeline.immutable import immutable
from pipeline.runtime.clock import END_MS
from pipeline.settings import TriggerSettings
from triggers.alerts import Alert, alert_id
from triggers.conditions import Reason, evaluate, render
from triggers.events import CONSENT_GRANTED, CONSENT_WITHDRAWN, ORDER_EVENT, SessionView
from triggers.guardrails import decide, prune
from triggers.profile import (
    DAY_COUNTERS,
    DAY_MS,
    Profile,
    apply_event,
    apply_session,
    merge,
    next_day_change,
    profile_fields,
)
from triggers.ruleset import Comparison, PastEventsCondition, Rule, RuleSet, walk_conditions
from triggers.state import CustomerState, PastEvent, Window
from triggers.wake import Wake

PastCounter = Callable[[PastEventsCondition], int]
_PRIORITY = {"high": 0, "normal": 1, "low": 2}
NOTHING = ""  # a held alert's window: no event cancels it
CONSENT_MEMORY = 64  # consent changes kept per customer and purpose (a few a year in practice)
AWAITED_MEMORY = 100  # awaited events (orders) kept per customer, however old
ORDER_MEMORY = 1000  # order ids remembered per customer, so that a retried order counts once
HOUR_MS = 3600 * 1000


@immutable
class Outcome:
    state: CustomerState
    alerts: tuple[Alert, ...] = ()
    profile_changed: bool = False


def _same_substance(a: Profile, b: Profile) -> bool:
    """Whether the parts of a profile whose change is worth a profile-change rule's look are the
    same (as tuples: a value is equal to itself, NaN too; dicts whatever their order)."""
    return a is b or (
        (a.orders, a.lifetime_revenue, a.value_tier, a.sessions, a.last_email_engagement)
        == (b.orders, b.lifetime_revenue, b.value_tier, b.sessions, b.last_email_engagement)
        and a.consent == b.consent
        and a.categories_bought == b.categories_bought
    )


def worth_publishing(previous: Profile, current: Profile) -> bool:
    """Publish a profile version when it is new, changed in substance, or seen on a new day.

    Not on every event: the compacted topic only needs the latest, and a version per page view
    cost more than the rules themselves. Counters ride along with the next published version.
    """
    if previous.event_count == 0 and previous.sessions == 0:
        return current != previous
    day = 24 * 3600 * 1000
    return (
        not _same_substance(previous, current)
        or previous.anonymous_ids != current.anonymous_ids
        or (previous.last_seen or 0) // day != (current.last_seen or 0) // day
    )


def _hour_at_or_after(time: int) -> int:
    return -(-time // HOUR_MS) * HOUR_MS


def hour_after(time: int) -> int:
    """The first event-time hour strictly after ``time``."""
    return time // HOUR_MS * HOUR_MS + HOUR_MS


def _day_counters(rule: Rule) -> tuple[str, ...]:
    """The stored times behind the day counters a scheduled rule's conditions read (all of them
    when a condition reads the whole profile)."""
    paths: set[str] = set()
    for cond in walk_conditions(rule.conditions):
        if isinstance(cond, Comparison):
            paths.update(p for p in (cond.field, cond.ref) if p is not None)
    names = {path.rpartition(".")[2] for path in paths}
    if any(path.partition(".")[2] == "" for path in paths):
        names.update(DAY_COUNTERS)
    return tuple(stored for name, stored in DAY_COUNTERS.items() if name in names)


def _alert_from_dict(data: dict[str, Any]) -> Alert:
    values = dict(data)
    values["reasons"] = tuple(Reason(c, a) for c, a in values["reasons"])
    values["triggering_event_ids"] = tuple(values["triggering_event_ids"])
    return Alert(**values)


def _alert_to_dict(alert: Alert) -> dict[str, Any]:
    data = {name: getattr(alert, name) for name in _ALERT_FIELDS}  # asdict deep-copies
    data["reasons"] = [[r.condition, r.actual] for r in alert.reasons]
    data["triggering_event_ids"] = list(alert.triggering_event_ids)
    data["data"] = dict(alert.data)
    return data


_ALERT_FIELDS = tuple(f.name for f in dataclass_fields(Alert))


class Engine:
    """Holds the rules and settings; every method is a function of its arguments."""

    def __init__(self, rules: RuleSet, settings: TriggerSettings) -> None:
        self.settings = settings
        self.tiers = settings.value_tiers
        self.reload(rules)

    def reload(self, rules: RuleSet) -> None:
        """Swap the rules; customer state (profiles, windows, guardrail memory) is untouched."""
        self.rules = rules
        enabled = rules.enabled()
        # Higher priority first: when the daily cap bites, it is the less important alert that waits.
        ranked = sorted(enabled, key=lambda r: _PRIORITY[r.alert.priority])
        self._rank = {r.id: i for i, r in enumerate(ranked)}  # decision order among equal times
        self._by_source = {
            source: tuple(r for r in ranked if r.trigger.source == source)
            for source in ("event", "session", "profile", "schedule")
        }
        names: set[str] = set()
        for rule in enabled:
            names.update(
                c.past_events.event
                for c in walk_conditions(rule.conditions)
                if isinstance(c, PastEventsCondition)
            )
            if rule.absence:
                names.add(rule.absence.event)
        self._history_names = frozenset(names)
        self._awaited_names = frozenset(r.absence.event for r in enabled if r.absence)
        self._history_ms = rules.history_window_s * 1000
        schedule = self._by_source["schedule"]
        self._day_counters = {rule.id: _day_counters(rule) for rule in schedule}
        self._wakes = {rule.id: Wake.of(rule) for rule in schedule}
        dumped = json.dumps([rule.model_dump(mode="json") for rule in schedule], sort_keys=True)
        self.schedule_version = hashlib.sha256(dumped.encode()).hexdigest()[:16]

    # -- inputs ---------------------------------------------------------------------------

    def on_event(self, state: CustomerState | None, event: EventView) -> Outcome:
        state = state or CustomerState.new(event.customer_id)
        seen = id_fingerprint(event.message_id)
        if event.is_bot or seen in state.seen:
            return Outcome(state)
        self._remember(state, seen)
        state.schedule_seen = None
        if event.name == ORDER_EVENT and not state.count_order(event.order_id, ORDER_MEMORY):
            return Outcome(state)  # a retried order: the fact is in the profile and the rules saw it
        alerts = self._close_windows(state, None, event)  # cancels what it answers; closes nothing
        previous = state.profile
        state.profile = apply_event(previous, event, self.tiers)
        if event.name in (CONSENT_GRANTED, CONSENT_WITHDRAWN) and event.consent_purposes:
            granted = event.name == CONSENT_GRANTED
            state.record_consent(event.time, event.consent_purposes, granted, CONSENT_MEMORY)
        if event.name in self._history_names:
            state.history.append(PastEvent.of(event))
            self._trim_history(state, event.time)
        live = not event.imported
        if not live and event.session_id:
            self._remember_imported(state, event.session_id)
        context = self._context(state, previous, event.time, event=event)
        counter = self._counter(state, event.time, event)
        for rule in self._by_source["event"]:
            if rule.trigger.matches(event.name):
                alerts += self._run(rule, state, context, event.time, (event.message_id,), counter, live)
        alerts += self._profile_rules(state, previous, event.time, event.message_id, live, context)
        prune(state, event.time, self.settings)
        return self._outcome(state, previous, alerts)

    def on_session(self, state: CustomerState | None, session: SessionView) -> Outcome:
        state = state or CustomerState.new(session.customer_id)
        seen = id_fingerprint(session.session_id)
        if seen in state.seen:
            return Outcome(state)
        self._remember(state, seen)
        state.schedule_seen = None
        alerts: list[Alert] = []
        previous = state.profile
        state.profile = apply_session(previous, session)
        if session.imported:
            self._remember_imported(state, session.session_id)
        live = session.session_id not in state.imported_sessions
        context = self._context(state, previous, session.end, session=session)
        counter = self._counter(state, session.end, None)
        for rule in self._by_source["session"]:
            alerts += self._run(rule, state, context, session.end, (session.session_id,), counter, live)
        alerts += self._profile_rules(state, previous, session.end, session.session_id, live, context)
        return self._outcome(state, previous, alerts)

    def close_due(self, state: CustomerState, now: int) -> Outcome:
        """Absence windows due at ``now``: for the stage, those of a device due before its link
        (``TriggerCore``, hand-over and forward); otherwise windows close at the watermark (``sweep``)."""
        return Outcome(state, tuple(self._close_windows(state, now, None)))

    def sweep(self, state: CustomerState, now: int, scheduled: bool = True, at: int | None = None) -> Outcome:
        """Absence windows due at the watermark ``now``, then (``scheduled``) the scheduled rules
        at event time ``at`` (default ``now``; after an end of input ``now`` is the end of time,
        while rules that look back from the present need a real one)."""
        alerts = self._close_windows(state, now, None)
        present = now if at is None else at
        if present >= END_MS:  # after an end of input with no real time known: close, keep memory
            return Outcome(state, tuple(alerts))
        if not scheduled:
            return Outcome(state, tuple(alerts))
        if self._by_source["schedule"] and state.profile.last_seen is not None:
            alerts += self._scheduled(state, present)
            alerts += self._close_windows(state, now, None)  # their held alerts: already behind ``now``
            state.schedule_seen = self.schedule_version
        # Only at an hour: pruned at a watermark, which batching decides, a forgotten id would
        # come back at another hour in another run.
        prune(state, present, self.settings)
        return Outcome(state, tuple(alerts))

    def next_hour(self, state: CustomerState, after: int) -> int | None:
        """The first event-time hour after ``after`` at which ``sweep`` may decide something else
        than at ``after`` for ``state`` as it stands (None: no such hour). Between two inputs only
        the passing days move the scheduled rules' context (``DAY_COUNTERS``, by whole days), and
        the dedupe memory's pruning; so a sweep at any other hour changes nothing, and the stage
        skips it; a rule is looked at once its conditions can hold (``triggers.wake``), every day
        only while they could. Absence and held windows are not counted here: the stage indexes
        their times."""
        hours: list[int] = []
        if self._by_source["schedule"] and state.profile.last_seen is not None:
            if state.schedule_seen != self.schedule_version:
                return after + HOUR_MS  # changed by an input, or new rules: they look at the next hour
            anchor = state.profile.last_event_id or state.customer_id
            context: list[dict[str, Any]] = []  # built once, if a rule's steady conditions need it
            for rule in self._by_source["schedule"]:
                if state.scheduled.get(rule.id) == anchor:
                    continue  # decided for this anchor: it does not run again until an event
                hours += self._rule_hours(rule, state, after, context)
        if state.emitted:
            pruned = min(state.emitted.values()) + self.settings.dedupe_retention_days * DAY_MS
            hours.append(max(hour_after(pruned), after + HOUR_MS))
        return min(hours, default=None)

    def _rule_hours(
        self, rule: Rule, state: CustomerState, after: int, context: list[dict[str, Any]]
    ) -> list[int]:
        """When an undecided scheduled rule is to be looked at after ``after``: the hour its
        conditions can first hold, or (daily ones, or holding already but undecided, as under a
        cooldown) each hour one of its day counters moves on; none before the next input."""
        wake = self._wakes[rule.id]
        if not wake.daily:

            def view() -> dict[str, Any]:
                if not context:
                    context.append(self._context(state, state.profile, after))
                return context[0]

            earliest = wake.earliest(state.profile, view)
            if earliest is None:
                return []
            if earliest > after:
                return [_hour_at_or_after(earliest)]
        hours = []
        for stored in self._day_counters[rule.id]:
            since = getattr(state.profile, stored)
            if since is not None:
                hours.append(_hour_at_or_after(next_day_change(since, after)))
        return hours

    def _scheduled(self, state: CustomerState, present: int) -> list[Alert]:
        """The scheduled rules at hour ``present``, each at most once per anchor (the last event)."""
        context = self._context(state, state.profile, present)
        anchor = state.profile.last_event_id or state.customer_id
        alerts: list[Alert] = []
        for rule in self._by_source["schedule"]:
            if state.scheduled.get(rule.id) == anchor:
                continue
            windows = len(state.windows)
            decided = self._run(rule, state, context, present, (anchor,), lambda _: 0)
            if decided or len(state.windows) != windows:
                state.scheduled[rule.id] = anchor
            alerts += decided
        return alerts

    def absorb(
        self, into: CustomerState | None, other: CustomerState, customer_id: str, linked_at: int | None = None
    ) -> Outcome:
        """Merge an anonymous customer's state into the known customer's. Consent the device gave
        counts for the customer from ``linked_at`` on (before it, nobody knew whose it was)."""
        into = into or CustomerState.new(customer_id)
        into.schedule_seen = None
        previous = into.profile
        into.profile = merge(previous, other.profile, self.tiers)
        known = {e.id for e in into.history}
        into.history = sorted(
            [*into.history, *(e for e in other.history if e.id not in known)], key=lambda e: e.time
        )
        merged = list(dict.fromkeys([*other.seen, *into.seen]))
        into.seen = dict.fromkeys(merged[-self.settings.history_max_events :])
        open_ids = {w.alert_id for w in into.windows}
        for window in other.windows:
            if window.alert_id in open_ids or window.alert_id in into.emitted:
                continue
            if any(
                e.name == window.absent and window.start <= e.time <= window.deadline for e in into.history
            ):
                continue  # the awaited event already happened under the customer's key (handover raced it)
            into.windows.append(
                Window(**{**window.to_dict(), "alert": {**window.alert, "customer_id": customer_id}})
            )
        for rule_id, time in other.last_fired.items():
            into.last_fired[rule_id] = max(time, into.last_fired.get(rule_id, time))
        for day, count in other.daily.items():
            into.daily[day] = into.daily.get(day, 0) + count
        into.emitted = {**other.emitted, **into.emitted}
        for order_id in other.order_ids:
            into.count_order(order_id, ORDER_MEMORY)
        for session_id in other.imported_sessions:
            self._remember_imported(into, session_id)
        for time, purpose, granted in other.consents:
            effective = time if linked_at is None else max(time, linked_at)
            into.record_consent(effective, (purpose,), granted, CONSENT_MEMORY)
        now = into.profile.updated_at or 0
        alerts = self._profile_rules(into, previous, now, f"merge:{other.customer_id}")
        return Outcome(into, tuple(alerts), True)

    # -- pieces ---------------------------------------------------------------------------

    @staticmethod
    def _outcome(state: CustomerState, previous: Profile, alerts: list[Alert]) -> Outcome:
        """A version when the change is worth one; else the change waits for the next flush."""
        publish = worth_publishing(previous, state.profile)
        if not publish and state.profile != previous:
            state.unpublished = True
        return Outcome(state, tuple(alerts), publish)

    def _remember_imported(self, state: CustomerState, session_id: str) -> None:
        if session_id in state.imported_sessions:
            return
        state.imported_sessions.append(session_id)
        if len(state.imported_sessions) > self.settings.history_max_events:
            del state.imported_sessions[: -self.settings.history_max_events]

    def _remember(self, state: CustomerState, seen: str) -> None:
        """Remember an input's fingerprint as the latest; the oldest beyond the cap go."""
        state.seen[seen] = None
        while len(state.seen) > self.settings.history_max_events:
            del state.seen[next(iter(state.seen))]

    def _trim_history(self, state: CustomerState, now: int) -> None:
        """Keep the rules' longest window of plentiful events (views), at most the count cap, and
        the latest ``AWAITED_MEMORY`` awaited events (orders) whatever their age: a window can open
        long after its order in event time (a session or a device's state read late, through
        another topic or hop), and must still find it."""
        horizon = now - self._history_ms
        awaited = self._awaited_names
        recent = [e for e in state.history if e.name not in awaited and e.time >= horizon]
        kept_awaited = sorted((e for e in state.history if e.name in awaited), key=lambda e: e.time)
        keep = {id(e) for e in recent[-self.settings.history_max_events :]}
        keep.update(id(e) for e in kept_awaited[-AWAITED_MEMORY:])
        state.history = [e for e in state.history if id(e) in keep]

    def _context(
        self,
        state: CustomerState,
        previous: Profile,
        now: int,
        event: EventView | None = None,
        session: SessionView | None = None,
    ) -> dict[str, Any]:
        # Rules only read the context: one view of the profile (built as read) is shared.
        fields = profile_fields(state.profile, now, self.tiers)
        context: dict[str, Any] = {
            "customer_id": state.customer_id,
            "profile": fields,
            "previous": fields if previous is state.profile else profile_fields(previous, now, self.tiers),
            "recommendations": [],
        }
        if event is not None:
            context["event"] = event.fields()
            recommended: dict[str, None] = {}
            for category in event.categories:
                recommended.update(dict.fromkeys(self.settings.cross_sell.get(category, [])))
            context["recommendations"] = list(recommended)
        if session is not None:
            context["session"] = session.fields()
        return context

    def _counter(self, state: CustomerState, now: int, event: EventView | None) -> PastCounter:
        def count(cond: PastEventsCondition) -> int:
            past = cond.past_events
            since = now - past.within * 1000
            wanted: set[str] = set()
            if past.same and event is not None:
                wanted = set(event.product_ids if past.same == "product_id" else event.categories)
                if not wanted:
                    return 0
            total = 0
            for e in state.history:
                if e.name != past.event or not since <= e.time <= now:
                    continue
                if wanted and not wanted & set(e.product_ids if past.same == "product_id" else e.categories):
                    continue
                total += 1
            return total

        return count

    def _run(
        self,
        rule: Rule,
        state: CustomerState,
        context: dict[str, Any],
        time: int,
        triggering_ids: tuple[str, ...],
        counter: PastCounter,
        live: bool = True,
    ) -> list[Alert]:
        if not live and rule.kind == "marketing":
            return []  # history (an import) is no moment to market to anyone
        held, reasons = evaluate(rule.conditions, context, counter)
        if not held:
            return []
        context = {**context, "rule_id": rule.id}
        alert = Alert(
            alert_id=alert_id(rule.id, triggering_ids),
            rule_id=rule.id,
            alert_type=rule.alert.type,
            customer_id=state.customer_id,
            time=time,
            kind=rule.kind,
            priority=rule.alert.priority,
            channel=rule.alert.channel,
            message=render(rule.alert.message, context),
            reasons=tuple(reasons),
            triggering_event_ids=triggering_ids,
            consent_purpose=rule.consent,
            data=self._data(context),
        )
        if rule.absence is not None:
            return self._open_window(rule, state, alert, time)
        if alert.kind == "marketing" and alert.consent_purpose:
            return self._hold(rule, state, alert, time)
        decided = decide(alert, rule, state, self.settings)
        return [decided] if decided else []

    def _hold(self, rule: Rule, state: CustomerState, alert: Alert, time: int) -> list[Alert]:
        """A marketing alert waits, as a window nothing cancels, until the stage's watermark has
        passed its time: a consent withdrawal read later from another partition still counts."""
        if alert.alert_id in state.emitted or any(w.alert_id == alert.alert_id for w in state.windows):
            return []
        state.windows.append(Window(alert.alert_id, rule.id, time, time, NOTHING, _alert_to_dict(alert)))
        return []

    def _open_window(self, rule: Rule, state: CustomerState, alert: Alert, start: int) -> list[Alert]:
        assert rule.absence is not None
        if alert.alert_id in state.emitted or any(w.alert_id == alert.alert_id for w in state.windows):
            return []
        deadline = start + rule.absence.within * 1000
        if any(e.name == rule.absence.event and start <= e.time <= deadline for e in state.history):
            return []  # the awaited event already arrived (another device, out of order)
        absent = Reason(f"no {rule.absence.event!r} within {rule.absence.within}s", 0)
        pending = _alert_to_dict(alert)
        pending.update(time=deadline, reasons=[*pending["reasons"], [absent.condition, absent.actual]])
        state.windows.append(Window(alert.alert_id, rule.id, start, deadline, rule.absence.event, pending))
        return []

    def _close_windows(self, state: CustomerState, now: int | None, event: EventView | None) -> list[Alert]:
        if not state.windows:
            return []
        alerts: list[Alert] = []
        still_open: list[Window] = []
        grace_ms = self.settings.absence_grace_s * 1000
        rank = self._rank
        order = sorted(state.windows, key=lambda w: (w.deadline, rank.get(w.rule_id, len(rank)), w.alert_id))
        for window in order:  # by time, then as the rules rank: the same answer whatever the arrival
            if (
                event is not None
                and event.name == window.absent
                and window.start <= event.time <= window.deadline
            ):
                continue  # cancelled: what the rule waited for happened in time
            wait = 0 if window.absent == NOTHING else grace_ms  # a held alert waits for nothing more
            if now is None or now < window.deadline + wait:
                still_open.append(window)
                continue
            rule = self.rules.get(window.rule_id)
            if rule is None or not rule.enabled:
                continue  # the rule was removed or disabled by a reload
            if rule.kind == "marketing" and self._of_history(state, window):
                continue  # its session turned out to be imported history
            decided = decide(_alert_from_dict(window.alert), rule, state, self.settings)
            if decided:
                alerts.append(decided)
        state.windows = still_open
        return alerts

    @staticmethod
    def _of_history(state: CustomerState, window: Window) -> bool:
        return bool(set(window.alert["triggering_event_ids"]) & set(state.imported_sessions))

    def _profile_rules(self, state: CustomerState, previous: Profile, now: int, cause: str, live: bool = True,
                       shared: dict[str, Any] | None = None) -> list[Alert]:  # fmt: skip
        """``shared``: the context the input's own rules saw at ``now``; its profile fields are
        reused (the profile rules see no ``event`` or ``session``)."""
        rules = self._by_source["profile"]
        if not rules or _same_substance(previous, state.profile):
            return []
        if shared is None:
            context = self._context(state, previous, now)
        else:
            context = {"customer_id": state.customer_id, "profile": shared["profile"],
                       "previous": shared["previous"], "recommendations": []}  # fmt: skip
        alerts: list[Alert] = []
        for rule in rules:
            alerts += self._run(rule, state, context, now, (cause,), lambda _: 0, live)
        return alerts

    @staticmethod
    def _data(context: dict[str, Any]) -> dict[str, Any]:
        """Values a channel needs to act (which products, which categories to recommend)."""
        data: dict[str, Any] = {}
        event = context.get("event") or {}
        session = context.get("session") or {}
        if event.get("product_ids"):
            data["product_ids"] = event["product_ids"]
        if event.get("categories"):
            data["categories"] = event["categories"]
        if session.get("products_added"):
            data["products_added"] = session["products_added"]
        if context.get("recommendations"):
            data["recommendations"] = context["recommendations"]
        if context["profile"].get("value_tier"):
            data["value_tier"] = context["profile"]["value_tier"]
        return data
