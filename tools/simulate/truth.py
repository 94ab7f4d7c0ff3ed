"""The ground truth of one run: what the pipeline should find, as dataclasses and as JSON.

Written next to the run (``ground-truth.json``) so the demo's checks and an analyst can hold
the webhouse's figures against what the simulator really did. Conventions in the JSON:
times are ISO-8601 UTC strings with milliseconds; money is a number in EUR with two
decimals (the dataclasses keep integer cents, so sums are exact); lists are sorted by time,
then id. ``customer_id`` is the userId the customer's events carry once they signed up;
an anonymous visitor has ``customer_id: null`` and is named by ``anonymous_id``.

Rule-shaped lists say whether the simulator *meant* the situation (``satisfies_rule``) and
whether its time window closed before the period ended (``decidable``): a cart left ten
minutes before ``now`` cannot have been alerted yet.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.simulate.messages import iso

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ProductLine:
    product_id: str
    category: str
    quantity: int
    price_cents: int


@dataclass(frozen=True, slots=True)
class OrderTruth:
    order_id: str
    customer_id: str
    at_ms: int
    revenue_cents: int
    total_cents: int  # revenue + shipping
    discount_cents: int
    coupon: str | None
    products: tuple[ProductLine, ...]
    visit_id: str
    campaign_id: str | None  # e-mail campaign whose click started the ordering visit


@dataclass(frozen=True, slots=True)
class CartTruth:
    visit_id: str
    customer_id: str | None  # as the visit's events carried it (None: the device was anonymous)
    eventual_customer_id: str | None  # who the visitor turned out to be, if they ever signed up
    anonymous_id: str
    channel: str
    visit_start_ms: int
    visit_end_ms: int
    last_add_ms: int
    products: tuple[ProductLine, ...]
    value_cents: int
    ordered_within_1h: bool
    satisfies_rule: bool  # added to cart, no order within 1 h of the visit's end
    due_ms: int  # visit end + 1 h: when the rule can decide
    decidable: bool
    marketing_consent: bool  # marketing e-mail consent held at due time (else: a suppressed alert)


@dataclass(frozen=True, slots=True)
class BrowseTruth:
    customer_id: str | None  # eventual customer id (None: never signed up)
    anonymous_ids: tuple[str, ...]
    product_id: str
    first_view_ms: int
    third_view_ms: int
    views_in_7_days: int  # views in the seven days up to the third one
    identified_at_third_view: bool
    bought_later: bool
    marketing_consent: bool


@dataclass(frozen=True, slots=True)
class MilestoneTruth:
    """A first purchase, or the order that lifted lifetime revenue over the VIP threshold."""

    customer_id: str
    order_id: str
    at_ms: int
    lifetime_revenue_cents: int


@dataclass(frozen=True, slots=True)
class WinBackTruth:
    customer_id: str
    inactive_since_ms: int
    returned_ms: int
    gap_days: float
    identified_on_return: bool  # the return visit's first event carried the customer id
    marketing_consent: bool


@dataclass(frozen=True, slots=True)
class ConsentEventTruth:
    customer_id: str | None
    anonymous_id: str | None
    at_ms: int
    action: str
    purposes: tuple[str, ...]
    source: str
    message_id: str


@dataclass(frozen=True, slots=True)
class CustomerTruth:
    customer_id: str
    kind: str  # the simulator's persona: vip, regular, occasional, dormant
    anonymous_ids: tuple[str, ...]
    signed_up_ms: int
    gender: str
    age: int
    city: str
    country: str
    orders: int
    revenue_cents: int
    vip: bool
    consent: dict[str, str]  # purpose -> granted | withdrawn (final state)


@dataclass(frozen=True, slots=True)
class CampaignTruth:
    campaign_id: str
    name: str
    slug: str
    sent_ms: int
    sends: int
    delivered: int
    bounced: int
    opened: int
    clicked: int
    unsubscribed: int
    spam: int
    visits: int
    orders: int
    revenue_cents: int


@dataclass(frozen=True, slots=True)
class ClickTruth:
    customer_id: str
    campaign_id: str
    clicked_ms: int
    ordered_within_24h: bool
    due_ms: int
    decidable: bool
    marketing_consent: bool


@dataclass(frozen=True, slots=True)
class TierTruth:
    """An order that lifted the customer's value tier (revenue OR order count thresholds)."""

    customer_id: str
    tier: str
    order_id: str
    at_ms: int
    lifetime_revenue_cents: int
    orders: int


@dataclass(frozen=True, slots=True)
class ChurnTruth:
    customer_id: str
    last_seen_ms: int
    orders: int


@dataclass(frozen=True, slots=True)
class CrossSellTruth:
    order_id: str
    customer_id: str
    at_ms: int
    category: str
    recommend: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BotTruth:
    bot_name: str
    user_agent: str
    anonymous_id: str
    ip: str
    events: int
    first_ms: int
    last_ms: int


@dataclass(frozen=True, slots=True)
class GroundTruth:
    seed: int
    start_ms: int
    now_ms: int
    customers_simulated: int  # people, anonymous ones included
    visitors_anonymous: int  # never signed up
    total_revenue_cents: int
    vip_revenue_cents: int  # lifetime revenue of customers over the VIP threshold
    vip_threshold_cents: int
    customers: tuple[CustomerTruth, ...]
    orders: tuple[OrderTruth, ...]
    abandoned_carts: tuple[CartTruth, ...]
    browse_abandonments: tuple[BrowseTruth, ...]
    vip: tuple[MilestoneTruth, ...]
    tiers_reached: tuple[TierTruth, ...]
    value_tiers: tuple[tuple[str, float, int], ...]  # (name, min revenue EUR, min orders), lowest first
    first_purchases: tuple[MilestoneTruth, ...]
    win_backs: tuple[WinBackTruth, ...]
    churn_risk: tuple[ChurnTruth, ...]  # orders, and nothing seen in the last 60 days
    consent_events: tuple[ConsentEventTruth, ...]
    marketing_withdrawn: tuple[str, ...]  # customer ids whose final marketing_email state is withdrawn
    campaigns: tuple[CampaignTruth, ...]
    email_clicks: tuple[ClickTruth, ...]
    cross_sell: tuple[CrossSellTruth, ...]
    cross_sell_map: dict[str, tuple[str, ...]]
    bots: tuple[BotTruth, ...]
    malformed_by_kind: dict[str, int]
    malformed_message_ids: dict[str, str]  # message id -> kind
    events_total: int
    events_by_label: dict[str, int]  # track event name, or page / screen / identify (valid events)
    events_by_channel: dict[str, dict[str, int]]  # channel -> label -> count (valid events)
    visits_by_source: dict[str, int]

    @property
    def total_revenue(self) -> float:
        return self.total_revenue_cents / 100

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **_plain(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)


def _plain(value: Any) -> Any:
    """Dataclasses to JSON-ready values: ``*_ms`` -> ISO time (``_at``), ``*_cents`` -> EUR."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            name, item = f.name, getattr(value, f.name)
            if name.endswith("_ms") and isinstance(item, int):
                out["at" if name == "at_ms" else name[:-3] + "_at"] = iso(item)
            elif name.endswith("_cents") and isinstance(item, int):
                out[name[:-6]] = round(item / 100, 2)
            else:
                out[name] = _plain(item)
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
