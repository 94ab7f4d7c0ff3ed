"""The ground truth agrees with itself and with the stream it describes (recomputed here from
the messages alone, independently of the simulator's facts)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pytest

from tests.tools.simulate.conftest import small_config
from tools.simulate import Simulation, generate
from tools.simulate.messages import to_ms

HOUR_MS = 3_600_000


def _ms(text: str) -> int:
    return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _valid(sim: Simulation, label: str | None = None) -> list[dict[str, Any]]:
    return [e.body for e in sim.events if e.malformed is None and (label is None or e.label == label)]


def test_orders_are_exactly_the_order_completed_events(small_sim: Simulation) -> None:
    streamed = {
        b["properties"]["order_id"]: (
            b["userId"],
            b["properties"]["revenue"],
            sorted(p["product_id"] for p in b["properties"]["products"]),
        )
        for b in _valid(small_sim, "Order Completed")
    }
    truth = {
        o.order_id: (o.customer_id, o.revenue_cents / 100, sorted(p.product_id for p in o.products))
        for o in small_sim.truth.orders
    }
    assert truth == streamed
    assert len(truth) > 50


def test_revenue_sums_and_every_order_belongs_to_a_known_customer(small_sim: Simulation) -> None:
    truth = small_sim.truth
    assert sum(o.revenue_cents for o in truth.orders) == truth.total_revenue_cents
    customers = {c.customer_id: c for c in truth.customers}
    assert {o.customer_id for o in truth.orders} <= set(customers)
    per_customer: Counter[str] = Counter()
    for order in truth.orders:
        per_customer[order.customer_id] += order.revenue_cents
    assert all(customers[c].revenue_cents == cents for c, cents in per_customer.items())
    assert sum(c.orders for c in truth.customers) == len(truth.orders)


def test_first_purchases_are_each_customers_earliest_order(small_sim: Simulation) -> None:
    earliest: dict[str, str] = {}
    for order in sorted(small_sim.truth.orders, key=lambda o: o.at_ms):
        earliest.setdefault(order.customer_id, order.order_id)
    assert {f.customer_id: f.order_id for f in small_sim.truth.first_purchases} == earliest


def test_vips_are_the_customers_over_the_threshold(small_sim: Simulation) -> None:
    truth = small_sim.truth
    over = {c.customer_id for c in truth.customers if c.revenue_cents >= truth.vip_threshold_cents}
    assert {v.customer_id for v in truth.vip} == over == {c.customer_id for c in truth.customers if c.vip}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_small_vip_minority_brings_most_revenue(seed: int) -> None:
    truth = generate(small_config(seed=seed, customers=400)).truth
    buyers = [c for c in truth.customers if c.orders]
    revenues = sorted((c.revenue_cents for c in buyers), reverse=True)
    top_decile = revenues[: max(1, len(revenues) // 10)]
    assert sum(top_decile) > 0.4 * truth.total_revenue_cents  # Pareto-like: top 10% of buyers
    assert len(truth.vip) < 0.15 * len(truth.customers)
    assert truth.vip_revenue_cents > 0.3 * truth.total_revenue_cents


def test_abandoned_carts_agree_with_the_stream(small_sim: Simulation) -> None:
    carts = small_sim.truth.abandoned_carts
    assert any(c.satisfies_rule for c in carts) and any(c.ordered_within_1h for c in carts)
    adds: dict[str, list[int]] = defaultdict(list)
    for body in _valid(small_sim, "Product Added"):
        adds[body["anonymousId"]].append(_ms(body["timestamp"]))
    orders_by_device: dict[str, list[int]] = defaultdict(list)
    orders_by_customer: dict[str, list[int]] = defaultdict(list)
    for body in _valid(small_sim, "Order Completed"):
        orders_by_device[body["anonymousId"]].append(_ms(body["timestamp"]))
        orders_by_customer[body["userId"]].append(_ms(body["timestamp"]))
    for cart in carts:
        in_visit = [t for t in adds[cart.anonymous_id] if cart.visit_start_ms <= t <= cart.visit_end_ms]
        assert max(in_visit) == cart.last_add_ms
        assert not [
            t for t in orders_by_device[cart.anonymous_id] if cart.visit_start_ms <= t <= cart.visit_end_ms
        ]
        later = orders_by_customer.get(cart.eventual_customer_id or "", [])
        assert cart.ordered_within_1h == any(
            cart.visit_end_ms < t <= cart.visit_end_ms + HOUR_MS for t in later
        )
        assert cart.satisfies_rule == (not cart.ordered_within_1h)


def test_browse_abandonments_agree_with_the_stream(small_sim: Simulation) -> None:
    found = small_sim.truth.browse_abandonments
    assert found
    for item in found:
        ids = (set(item.anonymous_ids) | {item.customer_id}) - {None}
        views = sorted(
            _ms(b["timestamp"])
            for b in _valid(small_sim, "Product Viewed")
            if b["properties"]["product_id"] == item.product_id
            and ({b.get("anonymousId"), b.get("userId")} & ids)
        )
        # The third view within seven days, and no earlier occasion.
        at = views.index(item.third_view_ms)
        assert at >= 2 and item.third_view_ms - views[at - 2] <= 7 * 24 * HOUR_MS
        bought = [
            _ms(b["timestamp"])
            for b in _valid(small_sim, "Order Completed")
            if b["userId"] == item.customer_id
            and item.product_id in {p["product_id"] for p in b["properties"]["products"]}
        ]
        assert not [t for t in bought if t < item.third_view_ms]
        assert item.bought_later == bool(bought)
        earlier = [views[i] for i in range(2, at) if views[i] - views[i - 2] <= 7 * 24 * HOUR_MS]
        assert not earlier


def test_value_tiers_rise_with_lifetime_revenue_or_order_count(small_sim: Simulation) -> None:
    truth = small_sim.truth
    assert truth.tiers_reached
    names = [name for name, _, _ in truth.value_tiers]
    revenue: Counter[str] = Counter()
    count: Counter[str] = Counter()
    rank: dict[str, int] = {}
    expected = []
    for order in truth.orders:
        revenue[order.customer_id] += order.revenue_cents
        count[order.customer_id] += 1
        reached = [
            i
            for i, (_, rev, n) in enumerate(truth.value_tiers, 1)
            if revenue[order.customer_id] >= rev * 100 or count[order.customer_id] >= n
        ]
        new = max(reached, default=0)
        if new > rank.get(order.customer_id, 0):
            expected.append((order.customer_id, names[new - 1], order.order_id))
            rank[order.customer_id] = new
    assert [(t.customer_id, t.tier, t.order_id) for t in truth.tiers_reached] == expected


def test_consent_flags_follow_the_consent_events(small_sim: Simulation) -> None:
    changes: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for event in small_sim.truth.consent_events:
        if "marketing_email" in event.purposes and event.customer_id:
            changes[event.customer_id].append((event.at_ms, event.action == "granted"))

    def held(customer: str | None, at: int) -> bool:
        state = False
        for ts, granted in sorted(changes.get(customer or "", [])):
            if ts <= at:
                state = granted
        return state

    carts = small_sim.truth.abandoned_carts
    assert all(c.marketing_consent == held(c.eventual_customer_id, c.due_ms) for c in carts)
    assert any(c.marketing_consent for c in carts) and not all(c.marketing_consent for c in carts)
    assert all(c.marketing_consent == held(c.customer_id, c.due_ms) for c in small_sim.truth.email_clicks)


def test_churn_risk_is_buyers_silent_for_sixty_days(small_sim: Simulation) -> None:
    truth = small_sim.truth
    assert truth.churn_risk
    buyers = {o.customer_id for o in truth.orders}
    for item in truth.churn_risk:
        assert item.customer_id in buyers
        assert truth.now_ms - item.last_seen_ms >= 60 * 24 * HOUR_MS
        seen = [_ms(b["timestamp"]) for b in _valid(small_sim) if b.get("userId") == item.customer_id]
        assert max(seen) <= item.last_seen_ms


def test_withdrawn_customers_sent_the_withdrawal_and_got_no_mail_after_it(small_sim: Simulation) -> None:
    withdrawn = small_sim.truth.marketing_withdrawn
    assert withdrawn
    for customer in withdrawn:
        mine = [b for b in _valid(small_sim) if b.get("userId") == customer]
        withdrawals = [
            _ms(b["timestamp"])
            for b in mine
            if b.get("event") == "Consent Withdrawn" and "marketing_email" in b["properties"]["purposes"]
        ]
        assert withdrawals
        last = max(withdrawals)
        regranted = [
            b
            for b in mine
            if b.get("event") == "Consent Granted"
            and _ms(b["timestamp"]) > last
            and "marketing_email" in b["properties"]["purposes"]
        ]
        assert not regranted
        assert not [b for b in mine if b.get("event") == "Email Sent" and _ms(b["timestamp"]) > last]
    finals = {c.customer_id: c.consent for c in small_sim.truth.customers}
    assert all(finals[c]["marketing_email"] == "withdrawn" for c in withdrawn)


def test_mail_goes_only_to_customers_who_opted_in(small_sim: Simulation) -> None:
    granted_at: dict[str, int] = {}
    for body in _valid(small_sim, "Consent Granted"):
        if "marketing_email" in body["properties"]["purposes"] and body.get("userId"):
            granted_at.setdefault(body["userId"], _ms(body["timestamp"]))
    for body in _valid(small_sim, "Email Sent"):
        assert granted_at[body["userId"]] < _ms(body["timestamp"])


@pytest.mark.parametrize("count", [0, 7, 25])
def test_malformed_events_are_as_configured(count: int) -> None:
    sim = generate(small_config(customers=20, malformed=count))
    by_kind = sim.truth.malformed_by_kind
    assert sum(by_kind.values()) == count == len(sim.truth.malformed_message_ids)
    if count >= 5:
        assert set(by_kind) == {
            "missing_id",
            "invalid_timestamp",
            "invalid_field",
            "invalid_type",
            "missing_event_name",
        }
    sent = {e.body["messageId"]: e.malformed for e in sim.events if e.malformed}
    assert sent == sim.truth.malformed_message_ids


def test_campaign_funnels_match_the_mail_events(small_sim: Simulation) -> None:
    sent = Counter(b["properties"]["campaign_id"] for b in _valid(small_sim, "Email Sent"))
    clicks = Counter(b["properties"]["campaign_id"] for b in _valid(small_sim, "Email Link Clicked"))
    for c in small_sim.truth.campaigns:
        assert c.sends == sent[c.campaign_id] and c.clicked == clicks[c.campaign_id]
        assert c.sends == c.delivered + c.bounced
        assert c.delivered >= c.opened >= c.clicked >= c.visits >= c.orders
    assert sum(c.clicked for c in small_sim.truth.campaigns) > 0


def test_event_counts_add_up(small_sim: Simulation) -> None:
    truth = small_sim.truth
    valid = sum(n for labels in truth.events_by_channel.values() for n in labels.values())
    assert valid == sum(truth.events_by_label.values())
    assert valid + sum(truth.malformed_by_kind.values()) == truth.events_total == len(small_sim.events)


def test_win_backs_follow_ninety_quiet_days(small_sim: Simulation) -> None:
    assert small_sim.truth.win_backs
    for item in small_sim.truth.win_backs:
        assert item.returned_ms - item.inactive_since_ms >= 90 * 24 * HOUR_MS


def test_json_uses_iso_times_and_euros(small_sim: Simulation) -> None:
    doc = json.loads(small_sim.truth.to_json())
    order = doc["orders"][0]
    assert {"order_id", "customer_id", "at", "revenue", "total", "products"} <= set(order)
    assert isinstance(order["revenue"], float) and order["at"].endswith("Z")
    assert isinstance(doc["total_revenue"], float)
    assert doc["now_at"] == "2026-11-23T12:00:00.000Z"
