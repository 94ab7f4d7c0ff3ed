"""Alerts against the simulator's ground truth, per cart: what `webhouse demo` prints, the e2e test asserts.

A cart-abandonment alert names the session that triggered it; the session (anonymous id and end)
names the simulated visit. What the alert must be follows from the messages as the pipeline can
know them at the alert's time (its deadline, the visit's end plus an hour):

- a device linked to its customer (a message with both ids) before the deadline plus the absence
  grace is judged as the customer: no alert if the customer ordered within the hour, and the
  customer's marketing consent at the deadline decides fired or suppressed; consent given on a
  device before it was linked counts from the link on;
- a device not linked by then is judged on its own: no order can answer it (orders are signed in),
  and only consent given on that device counts.

The simulator's per-person truth (``CartTruth.satisfies_rule``, ``marketing_consent``) also knows
who is behind a device that never signs in; such carts are counted apart (``unknowable``), not as
errors. Every fired marketing alert is also checked against the signed-in consent history.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from tools.simulate.messages import SimEvent
from tools.simulate.truth import CartTruth, GroundTruth

CART_RULE = "cart_abandonment"
CONSENT_PURPOSE = "marketing_email"
SAME_VISIT_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class AlertVerdict:
    carts: int  # carts the rule must alert on, as the pipeline can know them
    alerts: int  # cart-abandonment alerts landed, fired or suppressed
    unknowable: int = 0  # carts whose per-person truth differs from what the messages tell
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
            f"{len(self.consent_violations)} marketing alerts without consent "
            f"({self.unknowable} carts on devices never linked in time, judged as the device)"
        )


@dataclass(frozen=True, slots=True)
class Expected:
    alert: bool  # the rule holds (added to cart, no known order within the hour)
    consent: bool  # marketing consent held at the deadline, as known


class Knowledge:
    """Who each device turned out to be and when, consent changes and orders, from the messages."""

    def __init__(self, events: Iterable[SimEvent], truth: GroundTruth, grace_ms: int) -> None:
        self.grace_ms = grace_ms
        self.links: dict[str, tuple[str, int]] = {}  # device -> (customer, first linked time)
        for event in events:
            anonymous_id, user_id = event.body.get("anonymousId"), event.body.get("userId")
            if event.malformed is None and anonymous_id and user_id and anonymous_id not in self.links:
                self.links[anonymous_id] = (user_id, event.ts_ms)
        self.orders: dict[str, list[int]] = defaultdict(list)
        for order in truth.orders:
            self.orders[order.customer_id].append(order.at_ms)
        for times in self.orders.values():
            times.sort()
        self.consent: dict[str, list[tuple[int, bool]]] = defaultdict(list)  # profile key -> changes
        for ev in truth.consent_events:
            if CONSENT_PURPOSE not in ev.purposes:
                continue
            granted = ev.action == "granted"
            link = self.links.get(ev.anonymous_id or "")
            if ev.customer_id:
                self.consent[ev.customer_id].append((ev.at_ms, granted))
            elif ev.anonymous_id:
                self.consent[ev.anonymous_id].append((ev.at_ms, granted))
                if link is not None:  # the device's consent joins the customer's at the link
                    self.consent[link[0]].append((max(ev.at_ms, link[1]), granted))
        for changes in self.consent.values():
            changes.sort()

    def consent_at(self, key: str, at_ms: int) -> bool:
        changes = self.consent.get(key, [])
        i = bisect_right(changes, (at_ms, True))
        return changes[i - 1][1] if i else False

    def expected(self, cart: CartTruth) -> Expected:
        deadline = cart.visit_end_ms + HOUR_MS
        link = self.links.get(cart.anonymous_id)
        if link is not None and link[1] < deadline + self.grace_ms:
            customer = link[0]
            times = self.orders.get(customer, [])
            i = bisect_left(times, cart.visit_end_ms)
            ordered = i < len(times) and times[i] <= deadline
            return Expected(not ordered, self.consent_at(customer, deadline))
        return Expected(True, self.consent_at(cart.anonymous_id, deadline))


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


def _status_ok(expected: Expected, status: str, reason: str | None) -> bool:
    if expected.consent:
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


def compare(
    con: duckdb.DuckDBPyConnection, truth: GroundTruth, events: Iterable[SimEvent], grace_s: int
) -> AlertVerdict:
    knowledge = Knowledge(events, truth, grace_s * 1000)
    carts: dict[str, list[CartTruth]] = defaultdict(list)
    expected = {}
    for cart in truth.abandoned_carts:
        carts[cart.anonymous_id].append(cart)
        expected[cart.visit_id] = knowledge.expected(cart)
    unknowable = sum(
        1
        for c in truth.abandoned_carts
        if (c.satisfies_rule, c.marketing_consent) != astuple(expected[c.visit_id])
    )
    alerts = _cart_alerts(con)
    seen: Counter[str] = Counter()
    false_alarms: list[str] = []
    misses: list[str] = []
    for sid, status, reason, anonymous_id, end_ms in alerts:
        visit = _visit(carts, anonymous_id, end_ms)
        want = expected.get(visit.visit_id) if visit else None
        if visit is None or want is None or not want.alert:
            false_alarms.append(visit.visit_id if visit else sid)
            continue
        seen[visit.visit_id] += 1
        if seen[visit.visit_id] > 1:
            false_alarms.append(visit.visit_id)
        elif not _status_ok(want, status, reason):
            (misses if want.consent else false_alarms).append(visit.visit_id)
    due = [vid for vid, want in expected.items() if want.alert]
    misses += [vid for vid in due if not seen[vid]]
    return AlertVerdict(
        carts=len(due),
        alerts=len(alerts),
        unknowable=unknowable,
        false_alarms=sorted(false_alarms),
        misses=sorted(misses),
        consent_violations=_consent_violations(con, truth),
    )


def astuple(expected: Expected) -> tuple[bool, bool]:
    return (expected.alert, expected.consent)
