"""Trigger states are bounded: a customer's or device's state with no event for
``triggers.state_ttl_days`` (event time) and no open window is dropped at the first hour past it; its last
profile stays published; a later event starts a new state."""

from __future__ import annotations

from pipeline.event_view import to_ms

from .builders import at, event, harness


def test_a_state_idle_past_the_ttl_is_dropped_at_the_hour_past_it_and_an_active_one_stays() -> None:
    h = harness(state_ttl_days=30)
    h.event(event("Page Viewed", at(0), customer="c-old", anon="dev-old", call="page"))
    h.event(event("Page Viewed", at(0, days=20), customer="c-new", anon="dev-new", call="page"))
    h.sweep(to_ms(at(0, days=29, hours=23)))
    assert {"c-old", "c-new"} <= set(h.states)
    h.sweep(to_ms(at(1, days=30, hours=1)))  # c-old: 30 days and an hour without an event
    assert "c-old" not in h.states and "c-new" in h.states
    h.event(event("Page Viewed", at(0, days=31), customer="c-old", anon="dev-old", call="page"))
    assert h.states["c-old"].profile.event_count == 1  # back: a new state


def test_a_ttl_of_zero_keeps_every_state() -> None:
    kept = harness(state_ttl_days=0)
    kept.event(event("Page Viewed", at(0), customer="c-1", anon="dev-1", call="page"))
    kept.sweep(to_ms(at(0, days=500)))
    assert "c-1" in kept.states
    assert kept.local.evaluate.stage.core.metrics.states_expired._value.get() == 0  # type: ignore[attr-defined]
