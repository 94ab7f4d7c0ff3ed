"""Crawlers that execute the page's JavaScript, so the tag fires for them too.

Each crawl is a rapid run of page views (one to four seconds apart) from a crawler user agent
and address block, with a fresh anonymous id (crawlers keep no cookies). The processors are
expected to flag them and keep them out of sessions and triggers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tools.simulate.agents import CRAWLERS, WEB_LIBRARY, new_uuid
from tools.simulate.catalog import SHOP_URL, Catalog
from tools.simulate.config import SimulationConfig
from tools.simulate.messages import Recorder, SimEvent, base, to_ms


@dataclass(frozen=True, slots=True)
class Crawl:
    key: str
    bot_name: str
    user_agent: str
    anonymous_id: str
    ip: str
    events: int
    first_ms: int
    last_ms: int


def simulate_crawl(index: int, config: SimulationConfig, catalog: Catalog) -> tuple[list[SimEvent], Crawl]:
    rng = random.Random(f"{config.run_key}:bot:{index}")
    name, agent, prefix = CRAWLERS[index % len(CRAWLERS)]
    key = f"b{index:04d}"
    rec = Recorder(rng, key)
    anonymous_id = new_uuid(rng)
    ip = f"{prefix}.{rng.randrange(1, 255)}"
    pages = rng.randint(15, 90)
    start_ms, now_ms = to_ms(config.start), to_ms(config.now)
    t = first = rng.randrange(start_ms, max(start_ms + 1, now_ms - pages * 4_000 - 60_000))
    products = list(catalog.products)
    for i in range(pages):
        if i % 7 == 0:
            category = rng.choice(catalog.categories)
            path, title = f"/c/{category}", f"{category.replace('_', ' ').title()} - Example Shop"
        else:
            product = rng.choice(products)
            path, title = f"/p/{product.product_id}/{product.slug}", f"{product.name} - Example Shop"
        page = {"path": path, "title": title, "url": SHOP_URL + path}
        context = {"ip": ip, "library": WEB_LIBRARY, "page": page, "userAgent": agent}
        body = base(rng, "page", t, "web", anonymous_id, None, context)
        body["name"] = "Category" if path.startswith("/c/") else "Product"
        body["properties"] = dict(page)
        rec.emit(t, "web", "page", body)
        t += rng.randint(900, 4_000)
    return rec.events, Crawl(key, name, agent, anonymous_id, ip, pages, first, rec.events[-1].ts_ms)
