"""Skipping the hours ``Engine.next_hour`` calls quiet decides what visiting every hour decides.

The evaluate stage visits a state only at the hours where its scheduled rules, the dedupe memory's
pruning or the passing days can change something. The reference here is the sweep at every
event-time hour: both walk the same state from the same inputs over the same span, and must give
the same alerts at the same times and the same state (but for the record of the rules' last look).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.event_view import event_view
from pipeline.settings import TriggerSettings
from triggers.alerts import Alert
from triggers.engine import HOUR_MS, Engine
from triggers.profile import DAY_COUNTERS, DAY_MS, Profile, profile_fields
from triggers.ruleset import load_rules
from triggers.state import CustomerState

from .builders import RULES_DIR, at, consent, event, ms, order

# (kind, day offset, minute offset) of one input; the span after it, in hours.
KINDS = st.sampled_from(["order", "page", "consent", "withdraw"])
INPUTS = st.lists(
    st.tuples(KINDS, st.integers(0, 90), st.integers(0, 1439)),
    min_size=1,
    max_size=6,
)


def _engine(retention_days: int) -> Engine:
    settings = TriggerSettings(rules_dir=RULES_DIR, dedupe_retention_days=retention_days)
    return Engine(load_rules(RULES_DIR), settings)


def _record(kind: str, day: int, minute: int) -> dict[str, object]:
    when = at(minute, days=day)
    if kind == "order":
        return order(when)
    if kind in ("consent", "withdraw"):
        return consent(when, granted=kind == "consent")
    return event("Page Viewed", when, call="page")


def _every_hour(engine: Engine, state: CustomerState, start: int, end: int) -> list[Alert]:
    alerts: list[Alert] = []
    for hour in range(start + HOUR_MS, end + 1, HOUR_MS):
        alerts += engine.sweep(state, hour, at=hour).alerts
    return [*alerts, *engine.sweep(state, end, scheduled=False).alerts]


def _skipping(engine: Engine, state: CustomerState, start: int, end: int) -> list[Alert]:
    """As the stage does it (``TriggerCore._prepare`` and ``_sweep_state``), its mark moving on by
    the hour: a state is visited only at a mark by which the hour ``next_hour`` gave it or one of
    its windows is due (the stage's index); then the hours that can decide something up to the
    mark, then the windows due at the mark, and ``next_hour`` is asked again from the mark."""
    alerts: list[Alert] = []
    decided = start
    for mark in range(start + HOUR_MS, end + 1, HOUR_MS):
        hour = engine.next_hour(state, decided)
        window_due = any(window.deadline <= mark for window in state.windows)
        if (hour is None or hour > mark) and not window_due:
            continue
        while hour is not None and hour <= mark:
            alerts += engine.sweep(state, hour, at=hour).alerts
            hour = engine.next_hour(state, hour)
        alerts += engine.sweep(state, mark, scheduled=False).alerts
        decided = mark
    return [*alerts, *engine.sweep(state, end, scheduled=False).alerts]


def _comparable(state: CustomerState) -> CustomerState:
    return replace(state, schedule_seen=None)


@settings(max_examples=60, deadline=None)
@given(INPUTS, st.integers(1, 24 * 70), st.sampled_from([1, 3, 30]))
def test_the_hours_skipped_decide_nothing(
    inputs: list[tuple[str, int, int]], span: int, retention: int
) -> None:
    _same_either_way(inputs, span, retention)


@settings(max_examples=30, deadline=None)
@given(INPUTS, st.integers(24 * 58, 24 * 64), st.sampled_from([3, 90]))
def test_a_buyer_silent_past_churn_risk_is_decided_at_the_same_hour(
    inputs: list[tuple[str, int, int]], span: int, retention: int
) -> None:
    """The silences the first property rarely draws: past churn risk's 60 days after an order,
    where the hour the stage wakes (``triggers.wake``) is the hour the alert is due."""
    _same_either_way([*inputs, ("order", 91, 0)], span, retention)


def _same_either_way(inputs: list[tuple[str, int, int]], span: int, retention: int) -> None:
    engine = _engine(retention)
    every: CustomerState | None = None
    skipping: CustomerState | None = None
    hour = ms(at(0)) // HOUR_MS * HOUR_MS
    for kind, day, minute in sorted(inputs, key=lambda i: (i[1], i[2])):
        view = event_view(_record(kind, day, minute))
        assert view is not None
        before = view.time // HOUR_MS * HOUR_MS  # the hours before the input are decided first
        if every is not None and skipping is not None and before > hour:
            assert _every_hour(engine, every, hour, before) == _skipping(engine, skipping, hour, before)
            assert _comparable(every) == _comparable(skipping)
            hour = before
        every = engine.on_event(every, view).state
        skipping = engine.on_event(skipping, view).state
        assert _comparable(every) == _comparable(skipping)
    assert every is not None and skipping is not None
    end = hour + span * HOUR_MS
    assert _every_hour(engine, every, hour, end) == _skipping(engine, skipping, hour, end)
    assert _comparable(every) == _comparable(skipping)


def test_a_silent_buyer_is_looked_at_when_churn_risk_can_fire() -> None:
    """After the rules have seen it, a customer with an order wakes when churn risk's 60 days
    since last seen have passed, not every day (``triggers.wake``). (Its first alerts are
    remembered for 90 days here: forgetting them is a reason to look too.)"""
    engine = _engine(90)
    state = engine.on_event(None, event_view(order(at(30)))).state  # type: ignore[arg-type]
    hour = ms(at(0))
    first = engine.next_hour(state, hour)
    assert first == hour + HOUR_MS  # changed by an input: the rules look at the next hour
    engine.sweep(state, first, at=first)
    assert engine.next_hour(state, first) == ms(at(0, days=60, hours=1))  # last seen 09:30: 10:00


def test_a_customer_without_an_order_is_not_looked_at_for_churn_risk() -> None:
    """Churn risk needs an order, which only an input brings: nothing to look at until then."""
    engine = _engine(30)
    state = engine.on_event(None, event_view(event("Page Viewed", at(30), call="page"))).state  # type: ignore[arg-type]
    first = engine.next_hour(state, ms(at(0)))
    assert first is not None
    engine.sweep(state, first, at=first)
    assert engine.next_hour(state, first) is None


def test_the_day_counters_are_what_moves_with_time_in_the_rules_view() -> None:
    """``Engine.next_hour`` watches the stored times of ``DAY_COUNTERS`` only: they must be every
    field of ``profile_fields`` that changes when nothing but the time does."""
    known = ms(at(0))
    profile = Profile("c-1", last_seen=known, last_order_at=known, last_email_engagement=known)
    now = ms(at(0, days=3))
    before, after = profile_fields(profile, now, ()), profile_fields(profile, now + DAY_MS, ())
    assert {name for name in before if before[name] != after[name]} == set(DAY_COUNTERS)
