"""Facts -> ground truth: totals, milestones, consents, campaigns and counts; the rule-shaped
situations come from ``situations``."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tools.simulate import situations
from tools.simulate.bots import Crawl
from tools.simulate.campaigns import Campaign
from tools.simulate.config import SimulationConfig
from tools.simulate.facts import Facts, OrderFact
from tools.simulate.messages import SimEvent, to_ms
from tools.simulate.people import PURPOSES, Person
from tools.simulate.truth import (
    BotTruth,
    CampaignTruth,
    ConsentEventTruth,
    CrossSellTruth,
    CustomerTruth,
    GroundTruth,
    MilestoneTruth,
    OrderTruth,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def _campaigns(campaigns: Sequence[Campaign], facts: Facts) -> list[CampaignTruth]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for email in facts.emails:
        counts[email.campaign_id][email.event] += 1
    visits = Counter(v.campaign_id for v in facts.visits if v.campaign_id)
    orders = Counter(o.campaign_id for o in facts.orders if o.campaign_id)
    revenue: Counter[str] = Counter()
    for order in facts.orders:
        if order.campaign_id:
            revenue[order.campaign_id] += order.revenue_cents
    out = []
    for c in campaigns:
        n = counts[c.campaign_id]
        out.append(
            CampaignTruth(
                c.campaign_id,
                c.name,
                c.slug,
                c.send_ms,
                n["Email Sent"],
                n["Email Delivered"],
                n["Email Bounced"],
                n["Email Opened"],
                n["Email Link Clicked"],
                n["Unsubscribed"],
                n["Email Marked as Spam"],
                visits[c.campaign_id],
                orders[c.campaign_id],
                revenue[c.campaign_id],
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class _Milestones:
    """Per-order running totals: lifetime revenue per person and what each order reached."""

    lifetime: Counter[str]
    first_purchases: list[MilestoneTruth]
    vips: list[MilestoneTruth]
    cross_sell: list[CrossSellTruth]


def _milestones(
    orders: Sequence[OrderFact], threshold: int, cross_sell_map: Mapping[str, Sequence[str]]
) -> _Milestones:
    """Walk the orders in time order: first purchases, VIP crossings and cross-sell opportunities."""
    out = _Milestones(Counter(), [], [], [])
    for o in orders:
        before = out.lifetime[o.person]
        out.lifetime[o.person] += o.revenue_cents
        if before == 0:
            out.first_purchases.append(
                MilestoneTruth(o.customer_id, o.order_id, o.ts_ms, out.lifetime[o.person])
            )
        if before < threshold <= out.lifetime[o.person]:
            out.vips.append(MilestoneTruth(o.customer_id, o.order_id, o.ts_ms, out.lifetime[o.person]))
        for category in sorted({x.category for x in o.lines if x.category in cross_sell_map}):
            recommend = tuple(cross_sell_map[category])
            out.cross_sell.append(CrossSellTruth(o.order_id, o.customer_id, o.ts_ms, category, recommend))
    return out


def _final_consents(facts: Facts) -> dict[str, dict[str, str]]:
    """Each person's last action per consent purpose."""
    final: dict[str, dict[str, str]] = defaultdict(dict)
    for c in sorted(facts.consents, key=lambda c: c.ts_ms):
        for purpose in c.purposes:
            final[c.person][purpose] = c.action
    return final


def _customers(
    people: Sequence[Person],
    ix: situations.Index,
    lifetime: Counter[str],
    threshold: int,
    consent_final: dict[str, dict[str, str]],
) -> list[CustomerTruth]:
    """One record per person who signed up (anonymous visitors have none)."""
    return [
        CustomerTruth(
            customer_id=p.customer_id,
            kind=p.kind,
            anonymous_ids=ix.anonymous_ids.get(p.key, ()),
            signed_up_ms=ix.signed_up[p.key],
            gender=p.traits["gender"],
            age=p.traits["age"],
            city=p.traits["address"]["city"],
            country=p.traits["address"]["country"],
            orders=len(ix.order_times.get(p.key, [])),
            revenue_cents=lifetime[p.key],
            vip=lifetime[p.key] >= threshold,
            consent={k: v for k, v in sorted(consent_final[p.key].items()) if k in PURPOSES},
        )
        for p in people
        if p.key in ix.signed_up
    ]


def _order_truth(o: OrderFact) -> OrderTruth:
    return OrderTruth(
        o.order_id,
        o.customer_id,
        o.ts_ms,
        o.revenue_cents,
        o.revenue_cents + o.shipping_cents,
        o.discount_cents,
        o.coupon,
        situations.lines(o.lines),
        o.visit_id,
        o.campaign_id,
    )


def _consent_events(facts: Facts, ix: situations.Index) -> tuple[ConsentEventTruth, ...]:
    """Every consent change, with the customer id once the person has signed up."""
    return tuple(
        ConsentEventTruth(
            ix.people[c.person].customer_id if c.person in ix.signed_up else None,
            c.anonymous_id,
            c.ts_ms,
            c.action,
            c.purposes,
            c.source,
            c.message_id,
        )
        for c in sorted(facts.consents, key=lambda c: (c.ts_ms, c.message_id))
    )


def _bots(crawls: Sequence[Crawl]) -> tuple[BotTruth, ...]:
    return tuple(
        BotTruth(c.bot_name, c.user_agent, c.anonymous_id, c.ip, c.events, c.first_ms, c.last_ms)
        for c in sorted(crawls, key=lambda c: (c.first_ms, c.key))
    )


@dataclass(frozen=True, slots=True)
class _EventCounts:
    """The stream's counts: valid events by label and channel, malformed ones by kind and id."""

    malformed_by_kind: dict[str, int]
    malformed_message_ids: dict[str, str]
    events_by_label: dict[str, int]
    events_by_channel: dict[str, dict[str, int]]


def _event_counts(events: Sequence[SimEvent]) -> _EventCounts:
    valid = [e for e in events if e.malformed is None]
    malformed = [e for e in events if e.malformed is not None]
    by_channel: dict[str, Counter[str]] = defaultdict(Counter)
    for event in valid:
        by_channel[event.channel][event.label] += 1
    return _EventCounts(
        malformed_by_kind=dict(sorted(Counter(e.malformed or "" for e in malformed).items())),
        malformed_message_ids={str(e.body.get("messageId")): e.malformed or "" for e in malformed},
        events_by_label=dict(sorted(Counter(e.label for e in valid).items())),
        events_by_channel={ch: dict(sorted(c.items())) for ch, c in sorted(by_channel.items())},
    )


def derive_truth(
    config: SimulationConfig,
    people: Sequence[Person],
    facts: Facts,
    campaigns: Sequence[Campaign],
    crawls: Sequence[Crawl],
    events: Sequence[SimEvent],
) -> GroundTruth:
    now_ms = to_ms(config.now)
    ix = situations.Index.build(people, facts)
    orders = sorted(facts.orders, key=lambda o: (o.ts_ms, o.order_id))
    threshold = round(config.vip_revenue * 100)
    reached = _milestones(orders, threshold, config.cross_sell)
    consent_final = _final_consents(facts)
    marketing_withdrawn = sorted(
        ix.people[p].customer_id
        for p, final in consent_final.items()
        if final.get("marketing_email") == "withdrawn" and p in ix.signed_up
    )
    customers = _customers(people, ix, reached.lifetime, threshold, consent_final)
    counts = _event_counts(events)
    return GroundTruth(
        seed=config.seed,
        start_ms=to_ms(config.start),
        now_ms=now_ms,
        customers_simulated=len(people),
        visitors_anonymous=sum(1 for p in people if p.key not in ix.signed_up),
        total_revenue_cents=sum(o.revenue_cents for o in orders),
        vip_revenue_cents=sum(c.revenue_cents for c in customers if c.vip),
        vip_threshold_cents=threshold,
        customers=tuple(sorted(customers, key=lambda c: c.customer_id)),
        orders=tuple(_order_truth(o) for o in orders),
        abandoned_carts=tuple(situations.carts(facts, ix, now_ms)),
        browse_abandonments=tuple(situations.browse(facts, ix)),
        vip=tuple(reached.vips),
        tiers_reached=tuple(situations.tiers(orders, config.value_tiers)),
        value_tiers=tuple(config.value_tiers),
        first_purchases=tuple(reached.first_purchases),
        win_backs=tuple(situations.win_backs(facts, ix)),
        churn_risk=tuple(situations.churn(facts, ix, now_ms)),
        consent_events=_consent_events(facts, ix),
        marketing_withdrawn=tuple(marketing_withdrawn),
        campaigns=tuple(_campaigns(campaigns, facts)),
        email_clicks=tuple(situations.clicks(facts, ix, now_ms)),
        cross_sell=tuple(reached.cross_sell),
        cross_sell_map={k: tuple(v) for k, v in sorted(config.cross_sell.items())},
        bots=_bots(crawls),
        malformed_by_kind=counts.malformed_by_kind,
        malformed_message_ids=counts.malformed_message_ids,
        events_total=len(events),
        events_by_label=counts.events_by_label,
        events_by_channel=counts.events_by_channel,
        visits_by_source=dict(sorted(Counter(v.source for v in facts.visits).items())),
    )
