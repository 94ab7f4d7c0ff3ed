"""The simulated shop's product catalogue.

Products belong to categories that mirror the cross-sell cases of the domain (a book's film and
merchandise, an album's tour tickets and merchandise): a *franchise* (a title or an artist)
spans several categories, so a buyer of one item has a natural next item in another category.
The catalogue is fixed (built from its own constant seed, not the run's), so product ids mean
the same thing in every run and in every test.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

SHOP_URL = "https://shop.example.com"

# Category -> categories a buyer is steered to next (mirrors the trigger pack's default map).
CROSS_SELL: dict[str, tuple[str, ...]] = {
    "books": ("movies", "merchandise"),
    "movies": ("books", "merchandise"),
    "music": ("concert_tickets", "merchandise"),
    "kitchen": ("tableware",),
}

# name, (min, max) price in cents, products per category
_CATEGORIES: tuple[tuple[str, tuple[int, int], int], ...] = (
    ("books", (799, 3499), 40),
    ("movies", (999, 2999), 24),
    ("music", (899, 3299), 28),
    ("merchandise", (1499, 5999), 30),
    ("concert_tickets", (3900, 14900), 12),
    ("kitchen", (1999, 24900), 20),
    ("tableware", (999, 8999), 16),
    ("electronics", (2999, 129900), 24),
)

_TITLE_A = (
    "Silent",
    "Northern",
    "Hidden",
    "Last",
    "Golden",
    "Broken",
    "Winter",
    "Paper",
    "Iron",
    "Velvet",
    "Distant",
    "Crimson",
    "Hollow",
    "Wild",
    "Glass",
    "Midnight",
    "Salt",
    "Burning",
    "Quiet",
    "Electric",
)
_TITLE_B = (
    "River",
    "Lights",
    "Garden",
    "Kingdom",
    "Harbour",
    "Orchard",
    "Signal",
    "Atlas",
    "Machine",
    "Road",
    "Empire",
    "Tide",
    "Mountain",
    "Library",
    "Compass",
    "Engine",
    "Meadow",
    "Archive",
    "Lantern",
    "Coast",
)
_ARTISTS = (
    "The Lumen Sisters",
    "Kaya Ortiz",
    "Moss & Marrow",
    "Jonas Berg",
    "Velvet Static",
    "Ana Lind",
    "Northbound",
    "The Paper Kites Club",
    "Idris Vale",
    "Solène Marchand",
    "Low Orbit",
    "Mira Haas",
)
_MERCH = ("T-Shirt", "Hoodie", "Poster", "Mug", "Tote Bag", "Enamel Pin")
_KITCHEN = (
    "Chef's Knife",
    "Cast Iron Pan",
    "Dutch Oven",
    "Stand Mixer",
    "Espresso Maker",
    "Cutting Board",
    "Saucepan Set",
    "Kettle",
    "Blender",
    "Spice Grinder",
)
_TABLEWARE = (
    "Dinner Plate Set",
    "Wine Glasses",
    "Stoneware Bowls",
    "Linen Napkins",
    "Serving Platter",
    "Cutlery Set",
    "Espresso Cups",
    "Water Carafe",
)
_ELECTRONICS = (
    "Wireless Headphones",
    "Smart Speaker",
    "E-Reader",
    "Bluetooth Speaker",
    "Streaming Stick",
    "Turntable",
    "Noise-Cancelling Earbuds",
    "Tablet",
    "Soundbar",
    "Portable Projector",
    "Smartwatch",
    "Action Camera",
)
_BRANDS = ("Nordhaus", "Kestrel", "Auris", "Lumo", "Vanta", "Oakline")


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    brand: str  # the franchise (title or artist) for media, the maker otherwise
    price_cents: int

    @property
    def price(self) -> float:
        return self.price_cents / 100

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")

    @property
    def url(self) -> str:
        return f"{SHOP_URL}/p/{self.product_id}/{self.slug}"


@dataclass(frozen=True, slots=True, eq=False)
class Catalog:
    products: tuple[Product, ...]
    categories: tuple[str, ...]
    by_category: dict[str, tuple[Product, ...]]  # each sorted cheap to dear: price affinity is an index
    index: dict[str, Product]

    def in_category(self, category: str) -> Sequence[Product]:
        return self.by_category[category]

    def by_id(self, product_id: str) -> Product:
        return self.index[product_id]


def _price(rng: random.Random, low: int, high: int) -> int:
    # Log-uniform between low and high, ending in 9 cents as shops price.
    raw = low * (high / low) ** rng.random()
    return max(low, int(raw) // 100 * 100 + 99)


@cache
def build_catalog() -> Catalog:
    """The fixed catalogue (about 200 products); cached, identical in every run."""
    rng = random.Random("webhouse-catalog-v1")
    titles = sorted({f"The {a} {b}" for a in _TITLE_A for b in _TITLE_B})
    rng.shuffle(titles)
    products: list[Product] = []
    counter = 0
    for category, (low, high), count in _CATEGORIES:
        for i in range(count):
            counter += 1
            if category in ("books", "movies"):
                # Books and films share titles so adaptations exist in both categories.
                brand = titles[i % 30]
                name = brand if category == "books" else f"{brand} (Film)"
            elif category in ("music", "concert_tickets"):
                brand = _ARTISTS[i % len(_ARTISTS)]
                name = (
                    f"{brand}: {titles[60 + i]}"
                    if category == "music"
                    else f"{brand} Live, Tour {2026 + i % 2}"
                )
            elif category == "merchandise":
                brand = titles[i % 30] if i % 2 == 0 else _ARTISTS[i % len(_ARTISTS)]
                name = f"{brand} {_MERCH[i % len(_MERCH)]}"
            else:
                names = {"kitchen": _KITCHEN, "tableware": _TABLEWARE, "electronics": _ELECTRONICS}[category]
                brand = _BRANDS[i % len(_BRANDS)]
                name = f"{brand} {names[i % len(names)]}" + (
                    f" {i // len(names) + 1}" if i >= len(names) else ""
                )
            products.append(
                Product(
                    product_id=f"P{counter:04d}",
                    sku=f"{category[:3].upper()}-{counter:05d}",
                    name=name,
                    category=category,
                    brand=brand,
                    price_cents=_price(rng, low, high),
                )
            )
    categories = tuple(c[0] for c in _CATEGORIES)
    return Catalog(
        products=tuple(products),
        categories=categories,
        by_category={
            c: tuple(sorted((p for p in products if p.category == c), key=lambda p: p.price_cents))
            for c in categories
        },
        index={p.product_id: p for p in products},
    )
