"""The shape of a visit: land, browse, maybe cart, maybe check out, as the visit's intent says.

Intents: ``bounce`` (one page), ``browse``, ``cart`` (items added, then left: the cart
abandonment the triggers look for), ``buy`` (ends in an order) and ``complete`` (a return
visit that buys a cart left behind earlier).
"""

from __future__ import annotations

from tools.simulate.agents import Device, new_uuid
from tools.simulate.catalog import CROSS_SELL, Product
from tools.simulate.facts import OrderFact, VisitFact
from tools.simulate.visits import CURRENCY, Landing, PersonSim, Visit

SHIPPING_CENTS = 490
FREE_SHIPPING_FROM_CENTS = 5000
VAT_PERCENT = 19


def _money(cents: int) -> float:
    return round(cents / 100, 2)


def _browse(v: Visit, sim: PersonSim) -> Product | None:
    rng, person = sim.rng, sim.person
    last: Product | None = v.landing.product
    steps = 1 + min(9, int(rng.expovariate(1 / 2.2)))
    considering = [pid for pid in person.considering if pid not in sim.state.bought]
    if considering and rng.random() < sim.mix.consider_product_rate:
        steps = max(steps, 2)
    for step in range(steps):
        v.dwell()
        if v.t >= sim.now_ms:
            return last
        r = rng.random()
        if considering and step == steps - 1 and rng.random() < sim.mix.consider_product_rate:
            last = sim.catalog.by_id(rng.choice(considering))
        elif r < 0.2:
            last = v.search()
            v.dwell(0.5)
        elif r < 0.45:
            category = rng.choice(list(person.favourites) + sim.state.learned)
            v.category(category)
            v.dwell(0.6)
            last = sim.pick_product(category)
        else:
            last = sim.pick_product()
        v.product(last)
    return last


def _fill_cart(v: Visit, sim: PersonSim, last: Product | None) -> None:
    rng, person = sim.rng, sim.person
    items = 1 + min(5, int(rng.random() * person.spend * 1.1))
    for i in range(items):
        if i == 0 and last is not None:
            product = last
        else:
            v.dwell(0.8)
            product = sim.pick_product(dear=0.1 if person.kind == "vip" else 0.0)
            v.product(product)
        v.add(product, 2 if rng.random() < 0.1 else 1)
        if v.t >= sim.now_ms:
            return
    if len(v.cart) >= 2 and rng.random() < 0.12:
        v.remove(rng.choice(sorted(v.cart)))
    if rng.random() < 0.7:
        v.view_cart()


def _ensure_identified(v: Visit, sim: PersonSim) -> None:
    if v.user_id is not None:
        return
    if sim.state.signed_up_ms is not None:
        v.sign_in()
    else:
        v.sign_up()


def _checkout(v: Visit, sim: PersonSim, complete: bool) -> None:
    rng = sim.rng
    v.dwell()
    v.show("/checkout", "Checkout", "Checkout - Example Shop")
    lines = v.lines()
    subtotal = sum(line.price_cents * line.quantity for line in lines)
    coupon = v.landing.coupon
    discount = subtotal // 10 if coupon else 0
    revenue = subtotal - discount
    shipping = 0 if revenue >= FREE_SHIPPING_FROM_CENTS else SHIPPING_CENTS
    tax = round(revenue * VAT_PERCENT / (100 + VAT_PERCENT))
    order_id = f"ord_{rng.getrandbits(48):012x}"
    checkout_id = new_uuid(rng)
    products = v.cart_products()
    v.quick()
    v.track(
        "Checkout Started",
        {
            "checkout_id": checkout_id,
            "order_id": order_id,
            "value": _money(subtotal),
            "revenue": _money(revenue),
            "currency": CURRENCY,
            "products": products,
        },
    )
    v.dwell()
    v.track(
        "Checkout Step Viewed",
        {
            "checkout_id": checkout_id,
            "step": 1,
            "shipping_method": rng.choice(("standard", "standard", "express")),
        },
    )
    if not complete:
        return
    v.dwell(1.3)
    v.track(
        "Checkout Step Viewed",
        {
            "checkout_id": checkout_id,
            "step": 2,
            "payment_method": rng.choice(("card", "card", "paypal", "klarna")),
        },
    )
    v.dwell(0.8)
    props = {
        "checkout_id": checkout_id,
        "order_id": order_id,
        "affiliation": f"Example Shop {v.device.channel}",
        "subtotal": _money(subtotal),
        "total": _money(revenue + shipping),
        "revenue": _money(revenue),
        "shipping": _money(shipping),
        "tax": _money(tax),
        "discount": _money(discount),
        "currency": CURRENCY,
        "products": products,
    }
    if coupon:
        props["coupon"] = coupon
    v.track("Order Completed", props)
    person = sim.person
    sim.facts.orders.append(
        OrderFact(
            order_id,
            person.key,
            person.customer_id,
            v.visit_id,
            v.t,
            lines,
            subtotal,
            discount,
            revenue,
            shipping,
            tax,
            coupon,
            v.landing.campaign_id,
        )
    )
    v.order_id = order_id
    for line in lines:
        sim.state.bought.add(line.product_id)
        for target in CROSS_SELL.get(line.category, ()):
            if target not in sim.state.learned and target not in person.favourites:
                sim.state.learned.append(target)
    v.quick()
    v.show(
        "/checkout/confirmation",
        "Order Confirmation",
        "Thank you for your order - Example Shop",
        order_id=order_id,
    )


def _account(v: Visit, sim: PersonSim) -> None:
    """Preference-centre changes: withdrawing marketing consent, or opting in late."""
    state, person, rng = sim.state, sim.person, sim.rng
    if state.signed_up_ms is None or v.user_id is None:
        return
    if (
        person.withdraws
        and state.consent.get("marketing_email")
        and state.visits >= 3
        and rng.random() < 0.45
    ):
        purposes = ["marketing_email"] + (["personalisation"] if rng.random() < 0.3 else [])
        v.preferences("withdrawn", purposes)
    elif not person.withdraws and not state.consent.get("marketing_email") and rng.random() < 0.04:
        v.preferences("granted", ["marketing_email"])


def _land(v: Visit, sim: PersonSim, landing: Landing, carried: dict[str, int] | None) -> None:
    """The first page: home for a returning cart, else what the landing points at."""
    if carried:
        v.home()
    elif landing.product is not None:
        v.product(landing.product)
    elif landing.source == "paid":
        v.category(sim.rng.choice(sim.person.favourites))
    else:
        v.home()


def _cookie_banner(v: Visit, sim: PersonSim, first_time: bool) -> None:
    """A first web visit may answer the cookie banner with analytics consent."""
    if (
        first_time
        and not v.app
        and "analytics" not in sim.state.consent
        and sim.rng.random() < sim.mix.banner_consent
    ):
        v.quick()
        v.consent("granted", ["analytics"], "cookie_banner")


def _identify(v: Visit, sim: PersonSim) -> None:
    """Sign in if already a customer (sometimes), or sign up if this person ever does."""
    state, rng = sim.state, sim.rng
    if state.signed_up_ms is not None and v.user_id is None and rng.random() < 0.35:
        v.sign_in()
    elif sim.person.identifies and state.signed_up_ms is None and rng.random() < sim.mix.signup_per_visit:
        v.sign_up()


def _engage(v: Visit, sim: PersonSim, intent: str, carried: dict[str, int] | None) -> None:
    """Everything after the first page of a visit that does not bounce, as far as ``intent`` goes."""
    _identify(v, sim)
    if carried:
        v.cart = dict(carried)
        v.view_cart()
    else:
        last = _browse(v, sim)
        _account(v, sim)
        if intent in ("cart", "buy") and v.t < sim.now_ms:
            _fill_cart(v, sim, last)
    if intent in ("buy", "complete") and v.cart and v.t < sim.now_ms:
        _ensure_identified(v, sim)
        _checkout(v, sim, complete=True)
    elif intent == "cart" and v.cart and sim.rng.random() < 0.3 and v.t < sim.now_ms:
        _checkout(v, sim, complete=False)


def run_visit(
    sim: PersonSim,
    device: Device,
    start_ms: int,
    landing: Landing,
    intent: str,
    carried: dict[str, int] | None = None,
) -> VisitFact:
    v = Visit(sim, device, start_ms, landing)
    identified_at_start = v.user_id is not None
    first_time = device.anonymous_id not in sim.state.seen_devices
    if v.app:
        v.open_app()
    sim.state.seen_devices.add(device.anonymous_id)
    _land(v, sim, landing, carried)
    _cookie_banner(v, sim, first_time)
    if intent != "bounce":
        _engage(v, sim, intent, carried)
    if v.app:
        v.close_app()
    fact = VisitFact(
        visit_id=v.visit_id,
        person=sim.person.key,
        customer_id=v.user_id,
        identified_at_start=identified_at_start,
        anonymous_id=device.anonymous_id,
        channel=device.channel,
        device=device.kind,
        start_ms=start_ms,
        end_ms=v.t,
        source=landing.source,
        campaign_id=landing.campaign_id,
        events=v.events,
        cart=v.lines(),
        last_add_ms=v.last_add,
        order_id=v.order_id,
    )
    sim.facts.visits.append(fact)
    return fact
