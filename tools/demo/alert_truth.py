"""Alerts against the simulator's ground truth, per cart: what `webhouse demo` prints, the e2e test asserts.

A cart-abandonment alert names the session that triggered it; the session (anonymous id and end)
names the simulated visit; the visit's truth says whether the rule holds (cart, no order within
the hour) and whether marketing consent was held when the alert became due. Every marketing alert
of any rule is also checked against the customer's consent history at the alert's time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import duckdb

from tools.simulate.truth import CartTruth, GroundTruth

CART_RULE = "cart_abandonment"
CONSENT_PURPOSE = "marketing_email"
SAME_VISIT_MS = 60_000


@dataclass(frozen=True, slots=True)
class AlertVerdict:
    carts: int  # carts the rule must decide (added to cart, no order within the hour)
    alerts: int  # cart-abandonment alerts landed, fired or suppressed
    false_alarms: list[str] = field(default_factory=list)  # visit ids (or session ids) wrongly alerted
    misses: list[str] = field(default_factory=list)  # visit ids the rule should have alerted on
    consent_violations: list[str] = field(default_factory=list)  # alert ids fired without consent

    @property
    def exact(self) -> bool:
        return not (self.false_alarms or self.misses or self.consent_violations)

    def line(self) -> str:
        return (
            f"alerts vs ground truth: {self.carts} abandoned carts, {self.alerts} cart alerts: "
            f"{len(self.false_alarms)} false alarms, {len(self.misses)} misses, "
            f"{len(self.consent_violations)} marketing alerts without consent"
        )


def _cart_alerts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str | None, str | None, int | None]]:
    return [
        (str(sid), str(status), reason, anonymous_id, end_ms)
        for sid, status, reason, anonymous_id, end_ms in con.execute(
            """
            SELECT a.triggering_event_ids[1], a.status, a.suppression_reason, s.anonymous_id,
                   epoch_ms(s."end")
            FROM alerts a LEFT JOIN sessions s ON s.session_id = a.triggering_event_ids[1]
            WHERE a.rule_id = ?
            """,
            [CART_RULE],
        ).fetchall()
    ]


def _expected_status_ok(cart: CartTruth, status: str, reason: str | None) -> bool:
    if cart.marketing_consent:
        return status == "fired" or reason in ("cooldown", "daily_cap")
    return status == "suppressed" and reason == "consent_missing"


def _consent_violations(con: duckdb.DuckDBPyConnection, truth: GroundTruth) -> list[str]:
    changes: dict[str, list[tuple[int, bool]]] = {}
    for ev in sorted(truth.consent_events, key=lambda e: e.at_ms):
        if ev.customer_id and CONSENT_PURPOSE in ev.purposes:
            changes.setdefault(ev.customer_id, []).append((ev.at_ms, ev.action == "granted"))
    violations = []
    rows = con.execute(
        "SELECT alert_id, customer_id, epoch_ms(time) FROM alerts "
        "WHERE kind = 'marketing' AND status = 'fired' AND consent_purpose = ?",
        [CONSENT_PURPOSE],
    ).fetchall()
    for alert_id, customer_id, at_ms in rows:
        held = None
        for when, granted in changes.get(customer_id, []):
            if when > at_ms:
                break
            held = granted
        if held is False:
            violations.append(str(alert_id))
    return sorted(violations)


def _visit(
    carts: dict[str, list[CartTruth]], anonymous_id: str | None, end_ms: int | None
) -> CartTruth | None:
    """The device's visit that ended when the session did (the collector's clock-skew correction
    moves event times by the client's skew, milliseconds; a device's visits are 30 min apart)."""
    if anonymous_id is None or end_ms is None:
        return None
    near = [c for c in carts.get(anonymous_id, []) if abs(c.visit_end_ms - end_ms) <= SAME_VISIT_MS]
    return min(near, key=lambda c: abs(c.visit_end_ms - end_ms), default=None)


def compare(con: duckdb.DuckDBPyConnection, truth: GroundTruth) -> AlertVerdict:
    carts: dict[str, list[CartTruth]] = {}
    for cart in truth.abandoned_carts:
        carts.setdefault(cart.anonymous_id, []).append(cart)
    due = [c for c in truth.abandoned_carts if c.satisfies_rule]
    alerts = _cart_alerts(con)
    seen: Counter[str] = Counter()
    false_alarms: list[str] = []
    misses: list[str] = []
    for sid, status, reason, anonymous_id, end_ms in alerts:
        visit = _visit(carts, anonymous_id, end_ms)
        if visit is None or not visit.satisfies_rule:
            false_alarms.append(visit.visit_id if visit else sid)
            continue
        seen[visit.visit_id] += 1
        if seen[visit.visit_id] > 1:
            false_alarms.append(visit.visit_id)
        elif not _expected_status_ok(visit, status, reason):
            (misses if visit.marketing_consent else false_alarms).append(visit.visit_id)
    misses += [c.visit_id for c in due if not seen[c.visit_id]]
    return AlertVerdict(
        carts=len(due),
        alerts=len(alerts),
        false_alarms=sorted(false_alarms),
        misses=sorted(misses),
        consent_violations=_consent_violations(con, truth),
    )
