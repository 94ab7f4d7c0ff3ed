"""One customer's whole period: when they visit, which campaigns reach them, in time order.

Visit times follow a daily rhythm (lunch and evening peaks). Every item of the customer's
agenda starts at least ``visit_gap_s`` after the previous one ended, so one simulated visit
is exactly one server-side session under a 30-minute inactivity gap. Dormant customers
bought 92-200 days before the period; half of them come back during it (a win-back).
"""

from __future__ import annotations

import heapq
import math
import random
from typing import Any

from tools.simulate.campaigns import Campaign, eligible, run_campaign
from tools.simulate.catalog import Catalog
from tools.simulate.config import SimulationConfig
from tools.simulate.facts import Facts
from tools.simulate.journey import run_visit
from tools.simulate.messages import Recorder, SimEvent, to_ms
from tools.simulate.people import Person
from tools.simulate.visits import Landing, PersonSim

DAY_MS = 86_400_000
# Relative traffic by hour of day (UTC, European audience).
HOURS = (
    1,
    0.6,
    0.4,
    0.3,
    0.3,
    0.5,
    1.2,
    2.2,
    3,
    3.3,
    3.5,
    3.8,
    4.4,
    4.2,
    3.8,
    3.6,
    3.8,
    4.2,
    5,
    5.8,
    6.2,
    5.6,
    4,
    2.2,
)
SOURCES = (("direct", 35), ("search", 33), ("social", 16), ("paid", 16))


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method; means here are small.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _moment(rng: random.Random, first_ms: int, last_ms: int) -> int:
    """A time in [first, last) with the daily rhythm."""
    for _ in range(20):
        day = (
            first_ms - first_ms % DAY_MS + rng.randrange(max(1, (last_ms - first_ms) // DAY_MS + 1)) * DAY_MS
        )
        hour = rng.choices(range(24), weights=HOURS)[0]
        ms = day + hour * 3_600_000 + rng.randrange(3_600_000)
        if first_ms <= ms < last_ms:
            return ms
    return rng.randrange(first_ms, last_ms)


def _landing(sim: PersonSim) -> Landing:
    rng = sim.rng
    source = rng.choices([s for s, _ in SOURCES], weights=[w for _, w in SOURCES])[0]
    if source == "direct":
        return Landing("direct")
    if source == "paid":
        return Landing(
            "paid", utm={"medium": "cpc", "name": "brand-search", "source": "google", "term": "example shop"}
        )
    utm = None
    if source == "social" and rng.random() < 0.5:
        utm = {"medium": "social", "name": "autumn-stories", "source": "instagram"}
    return Landing(source, product=sim.pick_product(), utm=utm)


def _intent(sim: PersonSim) -> str:
    rng, mix, kind = sim.rng, sim.mix, sim.person.kind
    if sim.person.identifies and rng.random() < mix.buy_rate[kind]:
        return "buy"
    r = rng.random()
    bounce = mix.bounce_rate * (0.5 if kind == "vip" else 1.0)
    if r < bounce:
        return "bounce"
    return "cart" if r < bounce + mix.cart_without_order_rate else "browse"


def simulate_person(
    person: Person, config: SimulationConfig, catalog: Catalog, campaigns: list[Campaign]
) -> tuple[list[SimEvent], Facts]:
    rng = random.Random(f"{config.run_key}:person:{person.index}")
    mix = config.mix
    start_ms, now_ms = to_ms(config.start), to_ms(config.now)
    sim = PersonSim(person, rng, Recorder(rng, person.key), catalog, mix, now_ms)
    agenda: list[tuple[int, int, str, Any]] = []
    seq = 0

    def plan(at_ms: int, kind: str, payload: Any = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(agenda, (at_ms, seq, kind, payload))

    visits = _poisson(rng, mix.visits_per_month[person.kind] * config.days / 30)
    if person.kind == "dormant":
        for _ in range(rng.randint(1, 3)):
            plan(_moment(rng, start_ms - 200 * DAY_MS, start_ms - 92 * DAY_MS), "history")
        visits = max(1, visits) if rng.random() < 0.5 else 0
    else:
        visits = max(1, visits)
    last_start = now_ms - 15 * 60_000
    for _ in range(visits):
        plan(_moment(rng, start_ms, last_start), "visit")
    for campaign in campaigns:
        plan(campaign.send_ms + rng.randrange(40 * 60_000), "campaign", campaign)

    busy_until = -(10**15)
    gap_ms = int(mix.visit_gap_s * 1000)
    while agenda:
        planned, _, kind, payload = heapq.heappop(agenda)
        at = max(planned, busy_until + gap_ms + rng.randrange(60_000))
        if at >= last_start and kind != "return":
            continue
        if at >= now_ms:
            continue
        if kind == "campaign":
            if eligible(sim, at):
                busy_until = run_campaign(sim, payload, at)
            continue
        device = rng.choices(person.devices, weights=person.device_weights)[0]
        if kind == "return":
            device, cart = payload
            fact = run_visit(sim, device, at, Landing("return"), "complete", carried=cart)
        else:
            intent = "buy" if kind == "history" and rng.random() < 0.8 else _intent(sim)
            fact = run_visit(sim, device, at, _landing(sim), intent)
            if (
                fact.cart
                and fact.order_id is None
                and person.identifies
                and rng.random() < mix.return_to_buy_rate
            ):
                plan(
                    fact.end_ms + rng.randint(35 * 60_000, 55 * 60_000),
                    "return",
                    (device, {line.product_id: line.quantity for line in fact.cart}),
                )
        busy_until = fact.end_ms
    return sim.rec.events, sim.facts
