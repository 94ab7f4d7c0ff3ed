"""Guardrails: consent, cooldown, daily cap, dedupe across replays and restarts; reloads keep state."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.event_view import to_ms
from pipeline.fingerprint import id_fingerprint
from triggers.ruleset import load_rules
from triggers.stages import STATES

from .builders import RULES_DIR, at, consent, event, harness, order, session, summary


def test_no_consent_event_means_no_marketing_alert_but_a_recorded_suppression() -> None:
    h = harness("first_purchase_welcome")
    alerts = h.event(order(at(1)))
    assert summary(alerts) == [("first_purchase_welcome", "suppressed", "consent_missing")]
    assert alerts[0].to_record()["status"] == "suppressed"


def test_consent_default_can_be_configured() -> None:
    h = harness("first_purchase_welcome", consent_default_granted=True)
    assert summary(h.event(order(at(1)))) == [("first_purchase_welcome", "fired", None)]


def test_withdrawn_consent_suppresses_an_alert_that_became_due_later() -> None:
    h = harness("cart_abandonment")
    h.event(consent(at(0)))
    h.session(session(at(0), at(5), added=["p-1"]))
    h.event(consent(at(30), granted=False))  # withdrawn while the window is open
    alerts = h.sweep(to_ms(at(100)))
    assert summary(alerts) == [("cart_abandonment", "suppressed", "consent_missing")]
    assert h.states["c-1"].profile.consent == {"marketing_email": False}


def test_consent_is_per_purpose() -> None:
    h = harness("first_purchase_welcome")
    h.event(event("Consent Granted", at(0), channel="server", purposes=["analytics"]))
    assert summary(h.event(order(at(1)))) == [("first_purchase_welcome", "suppressed", "consent_missing")]


def test_a_withdrawal_is_not_forgotten_for_changes_of_other_purposes() -> None:
    """A customer's consent changes were kept as the latest 64 of any purpose: 64 grants of
    analytics (a consent banner re-sent on each page) pushed out the withdrawal of
    marketing_email, and with consent granted by default a welcome went out against it."""
    h = harness("first_purchase_welcome", consent_default_granted=True)
    h.event(consent(at(0), granted=False))
    for n in range(1, 70):
        h.event(event("Consent Granted", at(n), channel="server", purposes=["analytics"]))
    assert summary(h.event(order(at(80)))) == [("first_purchase_welcome", "suppressed", "consent_missing")]


def test_daily_cap_counts_fired_marketing_alerts_per_utc_day() -> None:
    h = harness(daily_cap_per_customer=1)
    h.event(consent(at(0)))
    alerts = h.event(order(at(1), products=["b-1"], category="books"))
    assert sorted(summary(alerts)) == [
        ("cross_sell", "suppressed", "daily_cap"),
        ("first_purchase_welcome", "fired", None),
    ]
    # a new UTC day: the cap starts again (cross-sell's 3-day cooldown still applies)
    later = h.event(order(at(0, days=4), products=["m-1"], category="music"))
    assert summary(later) == [("cross_sell", "fired", None)]


def test_service_alerts_ignore_consent_and_the_cap() -> None:
    h = harness("vip_tier_reached", daily_cap_per_customer=0)
    assert summary(h.event(order(at(1), revenue=600.0))) == [("vip_tier_reached", "fired", None)]


def test_replayed_events_emit_nothing_again() -> None:
    events = [consent(at(0)), order(at(1), products=["b-1"], category="books")]
    h = harness()
    first = [a for e in events for a in h.event(e)]
    assert len(first) == 2
    assert [a for e in events for a in h.event(e)] == []
    assert h.states["c-1"].profile.orders == 1  # counted once


def test_restart_from_serialized_state_emits_no_duplicate() -> None:
    """A restart: the stages' state is read back from their changelogs."""
    h = harness("cart_abandonment")
    h.event(consent(at(0)))
    closed = session(at(0), at(5), added=["p-1"], session_id="s-1")
    h.session(closed)
    fired = h.sweep(to_ms(at(100)))
    assert len(fired) == 1
    h.restart()
    h.session(closed)  # the closed session is read again
    assert h.sweep(to_ms(at(200))) == []


def test_alert_ids_are_deterministic_across_runs() -> None:
    def run() -> list[str]:
        h = harness()
        h.event(consent(at(0), message_id="m-c"))
        return [a.alert_id for a in h.event(order(at(1), message_id="m-o", products=["b"]))]

    assert run() == run()
    assert len(set(run())) == 2


def test_reload_keeps_profiles_and_open_windows(tmp_path: Path) -> None:
    h = harness()
    h.event(consent(at(0)))
    h.session(session(at(0), at(5), added=["p-1"]))
    h.reload(load_rules(RULES_DIR))
    assert summary(h.sweep(to_ms(at(100)))) == [("cart_abandonment", "fired", None)]
    assert h.states["c-1"].profile.sessions == 1


def test_reload_without_the_rule_drops_its_windows(tmp_path: Path) -> None:
    (tmp_path / "only.yaml").write_text((RULES_DIR / "first_purchase.yaml").read_text())
    h = harness()
    h.event(consent(at(0)))
    h.session(session(at(0), at(5), added=["p-1"]))
    h.reload(load_rules(tmp_path))
    assert h.sweep(to_ms(at(100))) == []
    assert h.pending() == []


def test_stitching_merges_the_anonymous_profile_and_its_history() -> None:
    h = harness("browse_abandonment")
    h.event(event("Product Viewed", at(1), customer=None, anon="dev-9", products=["p-5"]))
    h.event(event("Product Viewed", at(2), customer=None, anon="dev-9", products=["p-5"]))
    h.event(consent(at(3), customer="c-7", anon="dev-9"))  # logs in: the device is c-7's now
    assert "dev-9" not in h.states
    profile = h.states["c-7"].profile
    assert (profile.event_count, profile.anonymous_ids) == (3, ("dev-9",))
    alerts = h.event(event("Product Viewed", at(4), customer="c-7", anon="dev-9", products=["p-5"]))
    assert summary(alerts) == [("browse_abandonment", "fired", None)]
    assert alerts[0].customer_id == "c-7"


def test_bots_are_ignored() -> None:
    h = harness("browse_abandonment")
    h.event(consent(at(0)))
    for minute in range(5):
        assert h.event(event("Product Viewed", at(minute + 1), products=["p-1"], is_bot=True)) == []
    assert h.states["c-1"].profile.event_count == 1


def test_the_latest_inputs_are_remembered_against_replays_the_oldest_forgotten_first() -> None:
    h = harness(history_max_events=10)
    for i in range(11):
        h.event(event("Page Viewed", at(i), call="page", message_id=f"m-{i}"))
    h.event(event("Page Viewed", at(20), call="page", message_id="m-10"))  # remembered: dropped
    assert h.states["c-1"].profile.event_count == 11
    h.event(event("Page Viewed", at(21), call="page", message_id="m-0"))  # the oldest went: counted
    assert h.states["c-1"].profile.event_count == 12


def test_a_state_stored_with_the_ids_themselves_still_drops_their_replays() -> None:
    """States written before they kept fingerprints held the inputs' ids: read back, they are
    fingerprinted, so what they had seen is still known."""
    h = harness()
    h.event(event("Page Viewed", at(0), call="page", message_id="m-1"))
    store = h.local.evaluate.stores[STATES]
    stored = json.loads(store[b"c-1"])
    assert stored["seen"] == [id_fingerprint("m-1")] and "seen_ids" not in stored
    stored["seen_ids"] = ["m-1"]
    del stored["seen"]
    store.put(0, b"c-1", json.dumps(stored).encode())
    h.event(event("Page Viewed", at(1), call="page", message_id="m-1"))
    assert h.states["c-1"].profile.event_count == 1
