"""E-mail campaigns: the schedule, and each recipient's reactions as the ESP reports them.

A campaign goes to customers who signed up before it and hold marketing e-mail consent at
send time (a real ESP honours suppression lists the same way). Each send produces Email
Sent, then Delivered or Bounced; some recipients open, a share of openers click a tracked
link (a UTM-tagged visit follows at once), a few unsubscribe (Unsubscribed plus Consent
Withdrawn for marketing e-mail) or mark it as spam.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tools.simulate.agents import new_uuid
from tools.simulate.catalog import Catalog, Product
from tools.simulate.config import SimulationConfig
from tools.simulate.facts import ConsentFact, EmailFact
from tools.simulate.journey import run_visit
from tools.simulate.messages import email_message, to_ms
from tools.simulate.visits import POLICY_VERSION, Landing, PersonSim

PROVIDER = "webhouse-esp"
_THEMES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    # name, subject, featured categories, coupon
    ("New Releases Friday", "Fresh this week: books, films and albums", ("books", "movies", "music"), False),
    ("Kitchen Week", "Cook like you mean it: 10% off kitchen favourites", ("kitchen", "tableware"), True),
    ("Concert Season", "Your artists are on tour", ("concert_tickets", "music", "merchandise"), False),
    ("Autumn Reads", "Stories for long evenings", ("books", "merchandise"), False),
    ("Weekend Deals", "48 hours, 10% off electronics", ("electronics",), True),
    ("Film Night", "The adaptations everyone talks about", ("movies", "books"), False),
    ("Gift Guide", "Gifts they will actually use", ("merchandise", "tableware", "electronics"), True),
)


@dataclass(frozen=True, slots=True)
class Campaign:
    campaign_id: str
    name: str
    slug: str
    subject: str
    send_ms: int
    products: tuple[Product, ...]
    coupon: str | None


def plan_campaigns(config: SimulationConfig, catalog: Catalog) -> list[Campaign]:
    """One newsletter every ``campaign_every_days`` inside the period, at a morning hour."""
    rng = random.Random(f"{config.run_key}:campaigns")
    count = max(1, int(config.days / config.mix.campaign_every_days))
    day0 = config.start.replace(hour=0, minute=0, second=0, microsecond=0)
    campaigns = []
    for i in range(count):
        name, subject, categories, has_coupon = _THEMES[(i + config.seed) % len(_THEMES)]
        day = day0 + (i + 0.5) * (config.now - day0) / count
        send = day.replace(
            hour=rng.choice((8, 9, 10, 17)), minute=rng.choice((0, 15, 30)), second=0, microsecond=0
        )
        send_ms = to_ms(send)
        if not to_ms(config.start) <= send_ms < to_ms(config.now):
            continue
        products = tuple(rng.choice(catalog.in_category(c)) for c in categories)
        slug = f"{name.lower().replace(' ', '-')}-{send:%Y-%m-%d}"
        campaigns.append(
            Campaign(
                campaign_id=f"cmp_{send:%Y%m%d}_{i + 1:02d}",
                name=name,
                slug=slug,
                subject=subject,
                send_ms=send_ms,
                products=products,
                coupon=f"{name.split()[0].upper()}10" if has_coupon else None,
            )
        )
    return campaigns


def eligible(sim: PersonSim, at_ms: int) -> bool:
    state = sim.state
    return (
        state.signed_up_ms is not None
        and state.signed_up_ms < at_ms
        and bool(state.consent.get("marketing_email"))
        and not state.hard_bounced
    )


def run_campaign(sim: PersonSim, campaign: Campaign, at_ms: int) -> int:
    """One recipient's side of a campaign sent at ``at_ms``; returns when they were last busy."""
    rng, person = sim.rng, sim.person
    user_id = person.customer_id
    props = {
        "campaign_id": campaign.campaign_id,
        "campaign_name": campaign.name,
        "email_id": new_uuid(rng),
        "email_subject": campaign.subject,
        "list_id": "newsletter",
        "provider": PROVIDER,
    }

    def emit(ts: int, event: str, **extra: object) -> None:
        body = email_message(rng, ts, event, user_id, {**props, **extra}, person.locale)
        sim.rec.emit(ts, "email", event, body)
        sim.facts.emails.append(EmailFact(person.key, user_id, campaign.campaign_id, event, ts))

    t = at_ms
    emit(t, "Email Sent")
    t += rng.randint(1_000, 40_000)
    mix = sim.mix
    if rng.random() < mix.bounce_rate_email:
        hard = rng.random() < 0.4
        emit(
            t,
            "Email Bounced",
            bounce_type="hard" if hard else "soft",
            reason="mailbox does not exist" if hard else "mailbox full",
        )
        sim.state.hard_bounced = sim.state.hard_bounced or hard
        return t
    emit(t, "Email Delivered")
    if rng.random() < mix.spam_rate:
        t += rng.randint(60_000, 3_600_000)
        if t < sim.now_ms:
            emit(t, "Email Marked as Spam")
        return t
    if rng.random() >= mix.open_rate * (1.25 if person.kind == "vip" else 1.0):
        return t
    delay_s = min(rng.lognormvariate(math.log(2.5 * 3600), 1.1), 4 * 86400)
    opened = t + int(delay_s * 1000)
    if opened >= sim.now_ms:
        return t
    t = opened
    emit(t, "Email Opened")
    if rng.random() < mix.unsubscribe_rate:
        t += rng.randint(20_000, 90_000)
        emit(t, "Unsubscribed")
        t += rng.randint(500, 3_000)
        consent_props = {
            "purposes": ["marketing_email"],
            "source": "email_footer",
            "policy_version": POLICY_VERSION,
        }
        body = email_message(rng, t, "Consent Withdrawn", user_id, consent_props, person.locale)
        sim.rec.emit(t, "email", "Consent Withdrawn", body)
        sim.state.consent["marketing_email"] = False
        sim.facts.consents.append(
            ConsentFact(
                person.key,
                user_id,
                None,
                t,
                "withdrawn",
                ("marketing_email",),
                "email_footer",
                body["messageId"],
            )
        )
        return t
    if rng.random() >= mix.click_rate:
        return t
    product = rng.choice(campaign.products)
    t += rng.randint(5_000, 120_000)
    link = f"{product.url}?utm_source=newsletter&utm_medium=email&utm_campaign={campaign.slug}"
    emit(t, "Email Link Clicked", link_url=link)
    start = t + rng.randint(1_500, 8_000)
    if start >= sim.now_ms:
        return t
    web = [d for d in person.devices if d.kind != "app"]
    device = rng.choice([d for d in web if d.kind == "mobile"] or web)
    landing = Landing(
        source="email",
        product=product,
        utm={"content": product.product_id, "medium": "email", "name": campaign.slug, "source": "newsletter"},
        campaign_id=campaign.campaign_id,
        coupon=campaign.coupon,
    )
    wants = person.identifies and rng.random() < mix.click_buy_rate
    return run_visit(sim, device, start, landing, "buy" if wants else "browse").end_ms
