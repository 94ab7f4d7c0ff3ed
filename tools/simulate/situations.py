"""The trigger pack's situations, evaluated on the simulator's facts (issue 4's definitions).

- cart abandonment: items added in a visit that ends without an order, and no order by the
  same customer (any device) within one hour of the visit's end;
- browse abandonment: a product's third view within seven days, not bought before it;
- value tier reached: an order that raises the customer's tier (revenue OR order count);
- win-back: 90 or more days without activity, then a web or app visit;
- churn risk: a customer with orders and no activity in the last 60 days of the period;
- e-mail link clicked without an order within 24 hours.

Each carries ``marketing_consent``: whether the customer held marketing e-mail consent when
the rule would decide, because marketing alerts are suppressed without it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tools.simulate.facts import Facts, Line, OrderFact
from tools.simulate.people import Person
from tools.simulate.truth import (
    BrowseTruth,
    CartTruth,
    ChurnTruth,
    ClickTruth,
    ProductLine,
    TierTruth,
    WinBackTruth,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def lines(items: Sequence[Line]) -> tuple[ProductLine, ...]:
    return tuple(ProductLine(x.product_id, x.category, x.quantity, x.price_cents) for x in items)


@dataclass(frozen=True, slots=True)
class Index:
    """Per-person lookups the situations share."""

    people: dict[str, Person]
    signed_up: dict[str, int]  # person -> sign-up time
    order_times: dict[str, list[int]]
    consent: dict[str, list[tuple[int, bool]]]  # person -> marketing_email changes, in time order
    anonymous_ids: dict[str, tuple[str, ...]]

    @classmethod
    def build(cls, people: Sequence[Person], facts: Facts) -> Index:
        signed_up = {
            f.person: f.ts_ms for f in sorted(facts.identities, key=lambda f: f.ts_ms) if f.how == "signed_up"
        }
        order_times: dict[str, list[int]] = defaultdict(list)
        for order in sorted(facts.orders, key=lambda o: o.ts_ms):
            order_times[order.person].append(order.ts_ms)
        consent: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        for c in sorted(facts.consents, key=lambda c: c.ts_ms):
            if "marketing_email" in c.purposes:
                consent[c.person].append((c.ts_ms, c.action == "granted"))
        ids: dict[str, set[str]] = defaultdict(set)
        for visit in facts.visits:
            ids[visit.person].add(visit.anonymous_id)
        return cls(
            {p.key: p for p in people},
            signed_up,
            dict(order_times),
            dict(consent),
            {k: tuple(sorted(v)) for k, v in ids.items()},
        )

    def customer_id(self, person: str) -> str | None:
        return self.people[person].customer_id if person in self.signed_up else None

    def marketing_consent(self, person: str, at_ms: int) -> bool:
        state = False
        for ts, granted in self.consent.get(person, []):
            if ts > at_ms:
                break
            state = granted
        return state

    def ordered_between(self, person: str, after_ms: int, until_ms: int) -> bool:
        times = self.order_times.get(person, [])
        i = bisect.bisect_right(times, after_ms)
        return i < len(times) and times[i] <= until_ms


def carts(facts: Facts, ix: Index, now_ms: int) -> list[CartTruth]:
    found = []
    for v in facts.visits:
        if not v.cart or v.order_id is not None or v.last_add_ms is None:
            continue
        due = v.end_ms + HOUR_MS
        ordered = ix.ordered_between(v.person, v.end_ms, due)
        found.append(
            CartTruth(
                visit_id=v.visit_id,
                customer_id=v.customer_id,
                eventual_customer_id=ix.customer_id(v.person),
                anonymous_id=v.anonymous_id,
                channel=v.channel,
                visit_start_ms=v.start_ms,
                visit_end_ms=v.end_ms,
                last_add_ms=v.last_add_ms,
                products=lines(v.cart),
                value_cents=sum(x.price_cents * x.quantity for x in v.cart),
                ordered_within_1h=ordered,
                satisfies_rule=not ordered,
                due_ms=due,
                decidable=due <= now_ms,
                marketing_consent=ix.marketing_consent(v.person, due),
            )
        )
    return sorted(found, key=lambda c: (c.visit_end_ms, c.visit_id))


def browse(facts: Facts, ix: Index) -> list[BrowseTruth]:
    views: dict[tuple[str, str], list[tuple[int, str | None]]] = defaultdict(list)
    for view in facts.views:
        views[(view.person, view.product_id)].append((view.ts_ms, view.customer_id))
    bought: dict[tuple[str, str], list[int]] = defaultdict(list)
    for order in facts.orders:
        for line in order.lines:
            bought[(order.person, line.product_id)].append(order.ts_ms)
    found = []
    for (person, product_id), seen in views.items():
        seen.sort()
        purchases = bought.get((person, product_id), [])
        for i in range(2, len(seen)):
            at = seen[i][0]
            if at - seen[i - 2][0] > 7 * DAY_MS or any(t < at for t in purchases):
                continue
            found.append(
                BrowseTruth(
                    customer_id=ix.customer_id(person),
                    anonymous_ids=ix.anonymous_ids.get(person, ()),
                    product_id=product_id,
                    first_view_ms=seen[i - 2][0],
                    third_view_ms=at,
                    views_in_7_days=sum(1 for t, _ in seen if at - 7 * DAY_MS <= t <= at),
                    identified_at_third_view=seen[i][1] is not None,
                    bought_later=any(t >= at for t in purchases),
                    marketing_consent=ix.marketing_consent(person, at),
                )
            )
            break  # the first occasion; the rule's cooldown is seven days
    return sorted(found, key=lambda b: (b.third_view_ms, b.product_id))


def tiers(orders: Sequence[OrderFact], table: Sequence[tuple[str, float, int]]) -> list[TierTruth]:
    """An order that lifts the tier rank (the highest tier whose revenue OR count is met)."""

    def rank(revenue_cents: int, count: int) -> int:
        reached = 0
        for i, (_, min_revenue, min_orders) in enumerate(table, start=1):
            if revenue_cents >= round(min_revenue * 100) or count >= min_orders:
                reached = i
        return reached

    revenue: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    found = []
    for o in orders:
        before = rank(revenue[o.person], counts[o.person])
        revenue[o.person] += o.revenue_cents
        counts[o.person] += 1
        after = rank(revenue[o.person], counts[o.person])
        if after > before:
            found.append(
                TierTruth(
                    o.customer_id,
                    table[after - 1][0],
                    o.order_id,
                    o.ts_ms,
                    revenue[o.person],
                    counts[o.person],
                )
            )
    return found


def activity(facts: Facts) -> dict[str, list[tuple[int, int, bool]]]:
    """Per person: (start, end, is a web/app visit identified from its start), in time order.
    Visits and e-mail events both count as 'seen', as a profile's last-seen does."""
    spans: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
    for visit in facts.visits:
        spans[visit.person].append((visit.start_ms, visit.end_ms, visit.identified_at_start))
    for email in facts.emails:
        spans[email.person].append((email.ts_ms, email.ts_ms, False))
    for values in spans.values():
        values.sort()
    return spans


def win_backs(facts: Facts, ix: Index) -> list[WinBackTruth]:
    visit_starts = {(v.person, v.start_ms) for v in facts.visits}
    found = []
    for person, spans in activity(facts).items():
        if person not in ix.signed_up:
            continue
        last_end = spans[0][1]
        for start, end, identified in spans[1:]:
            if start - last_end >= 90 * DAY_MS and (person, start) in visit_starts:
                customer = ix.people[person].customer_id
                gap = round((start - last_end) / DAY_MS, 2)
                found.append(
                    WinBackTruth(
                        customer, last_end, start, gap, identified, ix.marketing_consent(person, start)
                    )
                )
            last_end = max(last_end, end)
    return sorted(found, key=lambda w: (w.returned_ms, w.customer_id))


def churn(facts: Facts, ix: Index, now_ms: int, days: int = 60) -> list[ChurnTruth]:
    found = []
    for person, spans in activity(facts).items():
        orders = len(ix.order_times.get(person, []))
        last_seen = max(end for _, end, _ in spans)
        if orders and person in ix.signed_up and now_ms - last_seen >= days * DAY_MS:
            found.append(ChurnTruth(ix.people[person].customer_id, last_seen, orders))
    return sorted(found, key=lambda c: c.customer_id)


def clicks(facts: Facts, ix: Index, now_ms: int) -> list[ClickTruth]:
    found = []
    for e in facts.emails:
        if e.event == "Email Link Clicked":
            due = e.ts_ms + 24 * HOUR_MS
            ordered = ix.ordered_between(e.person, e.ts_ms, due)
            found.append(
                ClickTruth(
                    e.customer_id,
                    e.campaign_id,
                    e.ts_ms,
                    ordered,
                    due,
                    due <= now_ms,
                    ix.marketing_consent(e.person, due),
                )
            )
    return sorted(found, key=lambda c: (c.clicked_ms, c.customer_id))
