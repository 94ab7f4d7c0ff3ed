"""Guardrails between a rule that holds and an alert that goes out, in this order:

1. dedupe: an alert id already emitted (fired or suppressed) is dropped silently:
   that is a replay or a restart, not a new decision;
2. consent: a marketing rule needs its purpose granted in the profile
   (``consent_default_granted`` when the customer never said) -> ``consent_missing``;
3. cooldown: the same rule fired for this customer less than ``cooldown`` ago, in
   event time -> ``cooldown``;
4. daily cap: ``daily_cap_per_customer`` marketing alerts already fired this UTC day
   -> ``daily_cap``.
A suppressed alert is still emitted, flagged, so the webhouse records it.
"""

from __future__ import annotations

from pipeline.settings import TriggerSettings
from triggers.alerts import Alert
from triggers.profile import DAY_MS
from triggers.ruleset import Rule
from triggers.state import CustomerState


def has_consent(state: CustomerState, purpose: str, settings: TriggerSettings, at: int | None = None) -> bool:
    """Consent in force at event time ``at`` (the alert's time); without a recorded change by
    then, the profile's consent when no change is recorded at all, else the default."""
    if at is not None and state.consents:
        known = state.consent_at(purpose, at)
        return settings.consent_default_granted if known is None else known
    return state.profile.consent.get(purpose, settings.consent_default_granted)


def decide(alert: Alert, rule: Rule | None, state: CustomerState, settings: TriggerSettings) -> Alert | None:
    """The alert as it goes out (fired or suppressed), or None for a duplicate; records it in state."""
    if alert.alert_id in state.emitted:
        return None
    purpose = alert.consent_purpose
    if alert.kind == "marketing" and purpose and not has_consent(state, purpose, settings, alert.time):
        alert = alert.suppressed("consent_missing")
    cooldown_ms = (rule.cooldown or 0) * 1000 if rule else 0
    last = state.last_fired.get(alert.rule_id)
    if alert.status == "fired" and last is not None and abs(alert.time - last) < cooldown_ms:
        alert = alert.suppressed("cooldown")
    day = str(alert.time // DAY_MS)
    capped = state.daily.get(day, 0) >= settings.daily_cap_per_customer
    if alert.status == "fired" and alert.kind == "marketing" and capped:
        alert = alert.suppressed("daily_cap")
    state.emitted[alert.alert_id] = alert.time
    if alert.status == "fired":
        state.last_fired[alert.rule_id] = max(state.last_fired.get(alert.rule_id, alert.time), alert.time)
        if alert.kind == "marketing":
            state.daily = {day: state.daily.get(day, 0) + 1} | {
                d: n for d, n in state.daily.items() if int(d) >= int(day) - 1 and d != day
            }
    return alert


def prune(state: CustomerState, now: int, settings: TriggerSettings) -> None:
    """Forget alert ids older than the dedupe retention (relative to event time ``now``)."""
    horizon = now - settings.dedupe_retention_days * DAY_MS
    if any(t < horizon for t in state.emitted.values()):
        state.emitted = {a: t for a, t in state.emitted.items() if t >= horizon}
