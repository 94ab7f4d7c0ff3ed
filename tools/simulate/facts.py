"""What the simulator did, recorded as it generates: the raw material of the ground truth.

Facts are written at the moment the behaviour happens (an order, a cart left behind, a
product view, a consent change, an e-mail reaction), so the ground truth is derived from
what the simulator *meant*, never re-parsed from its own messages. Money is in integer
cents, times in epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Line:
    product_id: str
    category: str
    quantity: int
    price_cents: int


@dataclass(frozen=True, slots=True)
class VisitFact:
    visit_id: str
    person: str
    customer_id: str | None  # the userId its events carried at its end (None: anonymous)
    identified_at_start: bool  # its first event already carried the userId
    anonymous_id: str
    channel: str
    device: str
    start_ms: int
    end_ms: int
    source: str  # direct | search | social | paid | email | return
    campaign_id: str | None
    events: int
    cart: tuple[Line, ...]  # what was in the cart when the visit ended
    last_add_ms: int | None
    order_id: str | None


@dataclass(frozen=True, slots=True)
class OrderFact:
    order_id: str
    person: str
    customer_id: str
    visit_id: str
    ts_ms: int
    lines: tuple[Line, ...]
    subtotal_cents: int
    discount_cents: int
    revenue_cents: int
    shipping_cents: int
    tax_cents: int
    coupon: str | None
    campaign_id: str | None  # the e-mail campaign whose click started the visit


@dataclass(frozen=True, slots=True)
class ViewFact:
    person: str
    product_id: str
    ts_ms: int
    customer_id: str | None  # None while the device was still anonymous


@dataclass(frozen=True, slots=True)
class ConsentFact:
    person: str
    customer_id: str | None
    anonymous_id: str | None
    ts_ms: int
    action: str  # granted | withdrawn
    purposes: tuple[str, ...]
    source: str
    message_id: str


@dataclass(frozen=True, slots=True)
class EmailFact:
    person: str
    customer_id: str
    campaign_id: str
    event: str  # Segment e-mail event name
    ts_ms: int


@dataclass(frozen=True, slots=True)
class IdentityFact:
    person: str
    customer_id: str
    anonymous_id: str
    ts_ms: int
    how: str  # signed_up | signed_in


@dataclass(slots=True)
class Facts:
    visits: list[VisitFact] = field(default_factory=list)
    orders: list[OrderFact] = field(default_factory=list)
    views: list[ViewFact] = field(default_factory=list)
    consents: list[ConsentFact] = field(default_factory=list)
    emails: list[EmailFact] = field(default_factory=list)
    identities: list[IdentityFact] = field(default_factory=list)

    def extend(self, other: Facts) -> None:
        self.visits.extend(other.visits)
        self.orders.extend(other.orders)
        self.views.extend(other.views)
        self.consents.extend(other.consents)
        self.emails.extend(other.emails)
        self.identities.extend(other.identities)
