"""One visit of one customer on one device: the pages or screens they see and what they do.

A visit is a short walk (land, browse, search, look at products, maybe add to cart, maybe
check out) with log-normal dwell times between steps, rendered as analytics.js page calls
on the web and as screen calls in the app; the commerce events follow Segment's e-commerce
spec. Every step is also recorded as a fact for the ground truth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from tools.simulate.agents import Device, new_uuid
from tools.simulate.catalog import SHOP_URL, Catalog, Product
from tools.simulate.config import Mix
from tools.simulate.facts import ConsentFact, Facts, IdentityFact, Line, ViewFact
from tools.simulate.messages import Recorder, SimEvent, base, client_context, iso
from tools.simulate.people import Person

POLICY_VERSION = "2026-03"
CURRENCY = "EUR"
_EXTERNAL = {
    "search": ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/"),
    "social": (
        "https://www.instagram.com/",
        "https://www.facebook.com/",
        "https://t.co/",
        "https://www.pinterest.com/",
    ),
    "paid": ("https://www.google.com/",),
}


@dataclass(frozen=True, slots=True)
class Landing:
    """Where a visit enters: its source, the product it lands on and its UTM tags."""

    source: str  # direct | search | social | paid | email | return
    product: Product | None = None
    utm: dict[str, str] | None = None  # Segment context.campaign keys: name, source, medium, content
    campaign_id: str | None = None  # an e-mail campaign's id
    coupon: str | None = None


@dataclass(slots=True)
class PersonState:
    """What persists between one customer's visits."""

    signed_up_ms: int | None = None
    logged_in: set[str] = field(default_factory=set)  # devices (anonymous ids) signed in
    seen_devices: set[str] = field(default_factory=set)
    consent: dict[str, bool] = field(default_factory=dict)
    hard_bounced: bool = False
    visits: int = 0
    bought: set[str] = field(default_factory=set)
    learned: list[str] = field(default_factory=list)  # categories picked up by cross-sell


@dataclass(slots=True)
class PersonSim:
    """Everything generating one customer needs, shared by their visits and e-mails."""

    person: Person
    rng: random.Random
    rec: Recorder
    catalog: Catalog
    mix: Mix
    now_ms: int
    facts: Facts = field(default_factory=Facts)
    state: PersonState = field(default_factory=PersonState)

    def pick_product(self, category: str | None = None, dear: float = 0.0) -> Product:
        rng, person = self.rng, self.person
        if category is None:
            pool = list(person.favourites) + self.state.learned
            category = rng.choice(pool) if rng.random() < 0.8 else rng.choice(self.catalog.categories)
        items = self.catalog.in_category(category)
        affinity = min(1.0, max(0.0, person.price_affinity + dear + rng.gauss(0, 0.18)))
        return items[min(len(items) - 1, int(affinity * len(items)))]


def product_props(product: Product, **extra: Any) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "sku": product.sku,
        "name": product.name,
        "brand": product.brand,
        "category": product.category,
        "price": product.price,
        "currency": CURRENCY,
        "url": product.url,
        **extra,
    }


class Visit:
    """Emits one visit's messages in order; ``t`` is the visit's clock in epoch ms."""

    def __init__(self, sim: PersonSim, device: Device, start_ms: int, landing: Landing) -> None:
        self.sim, self.device, self.landing = sim, device, landing
        self.rng = sim.rng
        self.t = self.start = start_ms
        sim.state.visits += 1
        self.visit_id = f"{sim.person.key}-v{sim.state.visits:03d}"
        self.referrer: str | None = (
            self.rng.choice(_EXTERNAL[landing.source]) if landing.source in _EXTERNAL else None
        )
        self.first_page = True
        self.events = 0
        self.cart: dict[str, int] = {}
        self.cart_id = new_uuid(self.rng)
        self.last_add: int | None = None
        self.order_id: str | None = None

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def user_id(self) -> str | None:
        known = self.device.anonymous_id in self.sim.state.logged_in
        return self.sim.person.customer_id if known else None

    @property
    def app(self) -> bool:
        return self.device.kind == "app"

    def dwell(self, factor: float = 1.0) -> None:
        mix = self.sim.mix
        seconds = self.rng.lognormvariate(math.log(mix.dwell_median_s * factor), mix.dwell_sigma)
        self._advance(int(min(seconds, mix.dwell_cap_s) * 1000) + 1)

    def quick(self) -> None:
        self._advance(self.rng.randint(250, 1800))

    def _advance(self, ms: int) -> None:
        # Never past the period's end: the steps check the clock and stop at the horizon.
        self.t = min(self.t + ms, self.sim.now_ms)

    def _send(self, call: str, label: str, page: dict[str, Any] | None = None, **fields: Any) -> SimEvent:
        person, device = self.sim.person, self.device
        # The visit's first event carries its campaign (the landing page; in the app, the deep
        # link's Application Opened), as the libraries report it: later events have none.
        campaign = self.landing.utm if self.events == 0 else None
        context = client_context(device, person.locale, person.timezone, page, campaign)
        body = base(self.rng, call, self.t, device.channel, device.anonymous_id, self.user_id, context)
        body.update(fields)
        self.events += 1
        return self.sim.rec.emit(self.t, device.channel, label, body)

    def show(self, path: str, name: str, title: str, search: str = "", **props: Any) -> None:
        """A page view (web) or screen view (app); the landing page carries the UTM tags."""
        if self.first_page and self.landing.utm:
            tags = {
                "utm_source": "source",
                "utm_medium": "medium",
                "utm_campaign": "name",
                "utm_content": "content",
                "utm_term": "term",
            }
            utm = self.landing.utm
            search = "?" + "&".join(f"{k}={quote_plus(utm[v])}" for k, v in tags.items() if v in utm)
        if self.app:
            self._send("screen", "screen", name=name, properties=props)
        else:
            url = SHOP_URL + path + search
            page = {"path": path, "referrer": self.referrer, "search": search, "title": title, "url": url}
            page = {k: v for k, v in page.items() if v}
            self._send("page", "page", page=page, name=name, properties={**page, **props})
            self.referrer = url
        self.first_page = False

    def track(self, event: str, properties: dict[str, Any]) -> SimEvent:
        return self._send("track", event, event=event, properties=properties)

    # -- steps ------------------------------------------------------------------------------
    def open_app(self) -> None:
        state, app = self.sim.state, self.device.app or {}
        if self.device.anonymous_id not in state.seen_devices:
            self.track("Application Installed", {"version": app.get("version"), "build": app.get("build")})
            self.quick()
        self.track(
            "Application Opened",
            {
                "from_background": self.rng.random() < 0.4,
                "version": app.get("version"),
                "build": app.get("build"),
            },
        )
        self.quick()

    def close_app(self) -> None:
        self.quick()
        self.track("Application Backgrounded", {})

    def home(self) -> None:
        self.show("/", "Home", "Example Shop - books, music, films and more")

    def category(self, category: str) -> None:
        label = category.replace("_", " ").title()
        self.show(f"/c/{category}", "Category", f"{label} - Example Shop", category=category)
        self.quick()
        items = self.sim.catalog.in_category(category)
        shown = self.rng.sample(list(items), k=min(6, len(items)))
        products = [
            {
                "product_id": p.product_id,
                "sku": p.sku,
                "name": p.name,
                "price": p.price,
                "category": p.category,
                "position": i + 1,
            }
            for i, p in enumerate(shown)
        ]
        self.track(
            "Product List Viewed",
            {"list_id": f"{category}-featured", "category": category, "products": products},
        )

    def search(self) -> Product:
        product = self.sim.pick_product()
        words = product.name.replace(":", " ").replace("(", " ").replace(")", " ").split()
        query = " ".join(self.rng.sample(words, k=min(len(words), self.rng.choice((1, 2))))).lower()
        self.show("/search", "Search", f"Search: {query} - Example Shop", search=f"?q={quote_plus(query)}")
        self.quick()
        self.track("Products Searched", {"query": query})
        return product

    def product(self, product: Product) -> None:
        self.show(
            f"/p/{product.product_id}/{product.slug}",
            "Product",
            f"{product.name} - Example Shop",
            product_id=product.product_id,
            category=product.category,
        )
        self.quick()
        self.track("Product Viewed", product_props(product))
        self.sim.facts.views.append(ViewFact(self.sim.person.key, product.product_id, self.t, self.user_id))

    def add(self, product: Product, quantity: int = 1) -> None:
        self.dwell(0.6)
        self.track("Product Added", product_props(product, cart_id=self.cart_id, quantity=quantity))
        self.cart[product.product_id] = self.cart.get(product.product_id, 0) + quantity
        self.last_add = self.t

    def remove(self, product_id: str) -> None:
        product = self.sim.catalog.by_id(product_id)
        self.dwell(0.5)
        self.track(
            "Product Removed", product_props(product, cart_id=self.cart_id, quantity=self.cart[product_id])
        )
        del self.cart[product_id]

    def lines(self) -> tuple[Line, ...]:
        catalog = self.sim.catalog
        return tuple(
            Line(pid, catalog.by_id(pid).category, qty, catalog.by_id(pid).price_cents)
            for pid, qty in self.cart.items()
        )

    def cart_products(self) -> list[dict[str, Any]]:
        catalog = self.sim.catalog
        products = [product_props(catalog.by_id(pid), quantity=qty) for pid, qty in self.cart.items()]
        for product in products:
            del product["currency"]  # the spec names the currency once, on the event
        return products

    def view_cart(self) -> None:
        self.dwell(0.7)
        self.show("/cart", "Cart", "Your cart - Example Shop")
        self.quick()
        self.track("Cart Viewed", {"cart_id": self.cart_id, "products": self.cart_products()})

    def identify(self, how: str) -> None:
        person, state = self.sim.person, self.sim.state
        state.logged_in.add(self.device.anonymous_id)
        if how == "signed_up":
            state.signed_up_ms = self.t
            traits = {**person.traits, "createdAt": iso(self.t)}
        else:
            traits = {"email": person.traits["email"]}
        self._send("identify", "identify", traits=traits)
        self.sim.facts.identities.append(
            IdentityFact(person.key, person.customer_id, self.device.anonymous_id, self.t, how)
        )
        self.quick()
        self.track(
            "Signed Up" if how == "signed_up" else "Signed In",
            {"method": self.rng.choice(("email", "email", "google", "apple"))},
        )

    def sign_up(self) -> None:
        self.dwell()
        self.show("/account/register", "Register", "Create your account - Example Shop")
        self.dwell(1.5)
        self.identify("signed_up")
        person = self.sim.person
        purposes = ["analytics"]
        if person.opts_in_marketing:
            purposes.append("marketing_email")
        if person.opts_in_personalisation:
            purposes.append("personalisation")
        self.quick()
        self.consent("granted", purposes, "signup_form")

    def sign_in(self) -> None:
        self.dwell(0.8)
        self.show("/account/login", "Sign In", "Sign in - Example Shop")
        self.dwell(0.6)
        self.identify("signed_in")

    def consent(self, action: str, purposes: list[str], source: str) -> None:
        event = self.track(
            f"Consent {action.title()}",
            {"purposes": purposes, "source": source, "policy_version": POLICY_VERSION},
        )
        for purpose in purposes:
            self.sim.state.consent[purpose] = action == "granted"
        self.sim.facts.consents.append(
            ConsentFact(
                self.sim.person.key,
                self.user_id,
                self.device.anonymous_id,
                self.t,
                action,
                tuple(purposes),
                source,
                event.body["messageId"],
            )
        )

    def preferences(self, action: str, purposes: list[str]) -> None:
        self.dwell()
        self.show("/account/preferences", "Preferences", "Your privacy preferences - Example Shop")
        self.dwell(0.8)
        self.consent(action, purposes, "preference_centre")
