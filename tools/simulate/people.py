"""Simulated customers: who they are (traits), what they use (devices) and what they like.

A person's kind sets the shape of their behaviour (``Mix``); a Pareto-distributed spend
multiplier on top makes a small minority carry most of the revenue, as the domain's VIP
programme describes. E-mail addresses use the reserved example domains.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tools.simulate.agents import Device, make_device
from tools.simulate.catalog import Catalog
from tools.simulate.config import Mix

# city, ISO country, locale, time zone, weight
CITIES: tuple[tuple[str, str, str, str, float], ...] = (
    ("Berlin", "DE", "de-DE", "Europe/Berlin", 8),
    ("Hamburg", "DE", "de-DE", "Europe/Berlin", 4),
    ("Munich", "DE", "de-DE", "Europe/Berlin", 4),
    ("Cologne", "DE", "de-DE", "Europe/Berlin", 3),
    ("Vienna", "AT", "de-AT", "Europe/Vienna", 3),
    ("Zurich", "CH", "de-CH", "Europe/Zurich", 2),
    ("Paris", "FR", "fr-FR", "Europe/Paris", 5),
    ("Lyon", "FR", "fr-FR", "Europe/Paris", 2),
    ("Amsterdam", "NL", "nl-NL", "Europe/Amsterdam", 3),
    ("Madrid", "ES", "es-ES", "Europe/Madrid", 3),
    ("Barcelona", "ES", "es-ES", "Europe/Madrid", 2),
    ("Milan", "IT", "it-IT", "Europe/Rome", 2),
    ("London", "GB", "en-GB", "Europe/London", 5),
    ("Manchester", "GB", "en-GB", "Europe/London", 2),
    ("Dublin", "IE", "en-IE", "Europe/Dublin", 1),
    ("Copenhagen", "DK", "da-DK", "Europe/Copenhagen", 1),
    ("Stockholm", "SE", "sv-SE", "Europe/Stockholm", 1),
    ("Warsaw", "PL", "pl-PL", "Europe/Warsaw", 2),
    ("Lisbon", "PT", "pt-PT", "Europe/Lisbon", 1),
)
FEMALE = (
    "Anna",
    "Lena",
    "Marie",
    "Sofia",
    "Emma",
    "Clara",
    "Julia",
    "Laura",
    "Nora",
    "Ines",
    "Chloé",
    "Lucía",
    "Giulia",
    "Olivia",
    "Maja",
    "Zofia",
    "Sara",
    "Hanna",
    "Elif",
    "Amira",
)
MALE = (
    "Lukas",
    "Jonas",
    "Paul",
    "Felix",
    "Leon",
    "David",
    "Hugo",
    "Mateo",
    "Luca",
    "Noah",
    "Oliver",
    "Jan",
    "Tomás",
    "Karim",
    "Erik",
    "Milan",
    "Samuel",
    "Adam",
    "Theo",
    "Ravi",
)
LAST = (
    "Müller",
    "Schmidt",
    "Fischer",
    "Weber",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schulz",
    "Martin",
    "Bernard",
    "Dubois",
    "García",
    "López",
    "Rossi",
    "Bianchi",
    "Smith",
    "Jones",
    "Murphy",
    "Jansen",
    "de Vries",
    "Nowak",
    "Kowalski",
    "Andersen",
    "Lindqvist",
    "Silva",
    "Yilmaz",
    "Novak",
    "Horvat",
)
KINDS = ("vip", "regular", "occasional", "dormant", "anonymous")
PURPOSES = ("analytics", "marketing_email", "personalisation")


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    key: str  # the simulator's own name for the actor, e.g. "c000042"
    kind: str  # vip | regular | occasional | dormant | anonymous
    customer_id: str  # the userId once they sign up (anonymous kinds never use it)
    traits: dict[str, Any]
    locale: str
    timezone: str
    devices: tuple[Device, ...]
    device_weights: tuple[float, ...]
    favourites: tuple[str, ...]  # categories, most liked first
    price_affinity: float  # 0 cheap .. 1 dear, an index into a category's price-sorted products
    spend: float  # Pareto multiplier on basket size and price
    considering: tuple[str, ...]  # product ids they keep coming back to
    opts_in_marketing: bool
    opts_in_personalisation: bool
    withdraws: bool  # withdraws marketing consent later in the preference centre

    @property
    def identifies(self) -> bool:
        return self.kind != "anonymous"


def _traits(rng: random.Random) -> tuple[dict[str, Any], str, str]:
    city, country, locale, timezone, _ = rng.choices(CITIES, weights=[c[4] for c in CITIES])[0]
    gender = rng.choices(("female", "male", "non-binary"), weights=(49, 49, 2))[0]
    first = rng.choice(FEMALE if gender == "female" else MALE if gender == "male" else FEMALE + MALE)
    last = rng.choice(LAST)
    age = max(18, min(84, int(rng.gauss(41, 13))))
    birth_year = 2026 - age
    local = "".join(c for c in f"{first}.{last}".lower() if c.isascii() and (c.isalnum() or c == "."))
    email = f"{local}{rng.randrange(1, 999)}@{rng.choice(('example.com', 'example.net', 'example.org'))}"
    traits = {
        "email": email,
        "firstName": first,
        "lastName": last,
        "gender": gender,
        "age": age,
        "birthday": f"{birth_year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "address": {"city": city, "country": country},
    }
    return traits, locale, timezone


def make_person(rng: random.Random, index: int, mix: Mix, catalog: Catalog) -> Person:
    kinds = mix.kinds()
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    customer_id = f"cus_{rng.getrandbits(48):012x}"
    traits, locale, timezone = _traits(rng)
    uses_app = kind != "anonymous" and rng.random() < mix.app_share * (2.0 if kind == "vip" else 1.0)
    first_kind = rng.choices(("desktop", "mobile"), weights=(45, 55))[0]
    kinds_used = [first_kind]
    if rng.random() < mix.second_device_share:
        kinds_used.append("mobile" if first_kind == "desktop" else "desktop")
    if uses_app:
        kinds_used.append("app")
    devices = tuple(make_device(rng, k) for k in kinds_used)
    weights = tuple({"desktop": 1.0, "mobile": 1.2, "app": 2.0}[d.kind] for d in devices)
    favourites = tuple(rng.sample(catalog.categories, k=3))
    # Pareto (alpha 1.5) spend, heavier for VIPs: the VIP minority carries most revenue.
    spend = min(rng.paretovariate(1.5), 8.0) * (2.2 if kind == "vip" else 1.0)
    price_affinity = min(1.0, rng.betavariate(2, 3) * (1.6 if kind == "vip" else 1.0))
    considering = tuple(
        rng.choice(catalog.in_category(c)).product_id for c in favourites[: rng.choice((1, 1, 2))]
    )
    return Person(
        index=index,
        key=f"c{index:06d}",
        kind=kind,
        customer_id=customer_id,
        traits=traits,
        locale=locale,
        timezone=timezone,
        devices=devices,
        device_weights=weights,
        favourites=favourites,
        price_affinity=price_affinity,
        spend=spend,
        considering=considering,
        opts_in_marketing=rng.random() < mix.marketing_opt_in[kind],
        opts_in_personalisation=rng.random() < mix.personalisation_opt_in,
        withdraws=rng.random() < mix.withdraw_rate,
    )
