"""Facts -> ground truth: totals, milestones, consents, campaigns and counts; the rule-shaped
situations come from ``situations``."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from tools.simulate import situations
from tools.simulate.bots import Crawl
from tools.simulate.campaigns import Campaign
from tools.simulate.config import SimulationConfig
from tools.simulate.facts import Facts
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
    by_key, signed_up = ix.people, ix.signed_up
    orders = sorted(facts.orders, key=lambda o: (o.ts_ms, o.order_id))
    threshold = round(config.vip_revenue * 100)

    lifetime: Counter[str] = Counter()
    first_purchases, vips, cross_sell = [], [], []
    for o in orders:
        before = lifetime[o.person]
        lifetime[o.person] += o.revenue_cents
        if before == 0:
            first_purchases.append(MilestoneTruth(o.customer_id, o.order_id, o.ts_ms, lifetime[o.person]))
        if before < threshold <= lifetime[o.person]:
            vips.append(MilestoneTruth(o.customer_id, o.order_id, o.ts_ms, lifetime[o.person]))
        for category in sorted({x.category for x in o.lines if x.category in config.cross_sell}):
            recommend = tuple(config.cross_sell[category])
            cross_sell.append(CrossSellTruth(o.order_id, o.customer_id, o.ts_ms, category, recommend))

    consent_final: dict[str, dict[str, str]] = defaultdict(dict)
    for c in sorted(facts.consents, key=lambda c: c.ts_ms):
        for purpose in c.purposes:
            consent_final[c.person][purpose] = c.action
    marketing_withdrawn = sorted(
        by_key[p].customer_id
        for p, final in consent_final.items()
        if final.get("marketing_email") == "withdrawn" and p in signed_up
    )

    customers = []
    for p in people:
        if p.key not in signed_up:
            continue
        traits = p.traits
        customers.append(
            CustomerTruth(
                customer_id=p.customer_id,
                kind=p.kind,
                anonymous_ids=ix.anonymous_ids.get(p.key, ()),
                signed_up_ms=signed_up[p.key],
                gender=traits["gender"],
                age=traits["age"],
                city=traits["address"]["city"],
                country=traits["address"]["country"],
                orders=len(ix.order_times.get(p.key, [])),
                revenue_cents=lifetime[p.key],
                vip=lifetime[p.key] >= threshold,
                consent={k: v for k, v in sorted(consent_final[p.key].items()) if k in PURPOSES},
            )
        )

    valid = [e for e in events if e.malformed is None]
    by_channel: dict[str, Counter[str]] = defaultdict(Counter)
    for event in valid:
        by_channel[event.channel][event.label] += 1
    malformed = [e for e in events if e.malformed is not None]
    return GroundTruth(
        seed=config.seed,
        start_ms=to_ms(config.start),
        now_ms=now_ms,
        customers_simulated=len(people),
        visitors_anonymous=sum(1 for p in people if p.key not in signed_up),
        total_revenue_cents=sum(o.revenue_cents for o in orders),
        vip_revenue_cents=sum(c.revenue_cents for c in customers if c.vip),
        vip_threshold_cents=threshold,
        customers=tuple(sorted(customers, key=lambda c: c.customer_id)),
        orders=tuple(
            OrderTruth(
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
            for o in orders
        ),
        abandoned_carts=tuple(situations.carts(facts, ix, now_ms)),
        browse_abandonments=tuple(situations.browse(facts, ix)),
        vip=tuple(vips),
        tiers_reached=tuple(situations.tiers(orders, config.value_tiers)),
        value_tiers=tuple(config.value_tiers),
        first_purchases=tuple(first_purchases),
        win_backs=tuple(situations.win_backs(facts, ix)),
        churn_risk=tuple(situations.churn(facts, ix, now_ms)),
        consent_events=tuple(
            ConsentEventTruth(
                by_key[c.person].customer_id if c.person in signed_up else None,
                c.anonymous_id,
                c.ts_ms,
                c.action,
                c.purposes,
                c.source,
                c.message_id,
            )
            for c in sorted(facts.consents, key=lambda c: (c.ts_ms, c.message_id))
        ),
        marketing_withdrawn=tuple(marketing_withdrawn),
        campaigns=tuple(_campaigns(campaigns, facts)),
        email_clicks=tuple(situations.clicks(facts, ix, now_ms)),
        cross_sell=tuple(cross_sell),
        cross_sell_map={k: tuple(v) for k, v in sorted(config.cross_sell.items())},
        bots=tuple(
            BotTruth(c.bot_name, c.user_agent, c.anonymous_id, c.ip, c.events, c.first_ms, c.last_ms)
            for c in sorted(crawls, key=lambda c: (c.first_ms, c.key))
        ),
        malformed_by_kind=dict(sorted(Counter(e.malformed or "" for e in malformed).items())),
        malformed_message_ids={str(e.body.get("messageId")): e.malformed or "" for e in malformed},
        events_total=len(events),
        events_by_label=dict(sorted(Counter(e.label for e in valid).items())),
        events_by_channel={ch: dict(sorted(c.items())) for ch, c in sorted(by_channel.items())},
        visits_by_source=dict(sorted(Counter(v.source for v in facts.visits).items())),
    )
