"""The business terms, defined once: value tiers (VIP), RFM segments, active customer.

Profiles and trigger rules (``triggers/profile.py``) call the Python functions; the
webhouse's SQL (``sinks/analyses.py``) is generated from the same definitions, so a
report, a profile and an alert never disagree about who is VIP or who is lost.

- **Value tier**: the highest tier (``triggers.value_tiers``, lowest first) whose lifetime
  revenue OR order-count threshold the customer has reached. Lifetime revenue is the sum of
  completed orders' revenue as the shop reported it; orders are completed orders. A refund
  does not take a tier back (a tier reached is a milestone). Below the first tier:
  ``NO_TIER``. **VIP** is the top tier.
- **RFM**: recency = days since the last completed order, frequency = distinct completed
  orders, monetary = net revenue (refunds subtracted). Scores 1-5 are quintiles by rank
  (5 best); the segment is the usual R x F grid below, so a one-time buyer long ago
  (R 1-2, F 1-2) is "hibernating", never "promising".
- **Active customer**: any activity but e-mail (an event on the web, app or server, or an
  order) within ``webhouse.dormant_days`` of "now"; a customer not active is dormant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipeline.immutable import immutable

NO_TIER = "none"
DAY_MS = 24 * 3600 * 1000
# Channels whose events do not make a customer active (an e-mail open is the ESP's pixel).
INACTIVE_CHANNELS = ("email",)


class Tier(Protocol):
    """A value tier (``settings.ValueTierSettings``); read-only here."""

    @property
    def name(self) -> str: ...
    @property
    def min_revenue(self) -> float: ...
    @property
    def min_orders(self) -> int: ...


def tier_for(revenue: float, orders: int, tiers: Sequence[Tier]) -> str | None:
    """The highest tier whose revenue OR order threshold is met (None below the first)."""
    reached = None
    for tier in tiers:
        if revenue >= tier.min_revenue or orders >= tier.min_orders:
            reached = tier.name
    return reached


def vip_tier(tiers: Sequence[Tier]) -> str:
    """VIP is the top tier."""
    return tiers[-1].name


def tier_sql(revenue: str, orders: str, tiers: Sequence[Tier]) -> str:
    """``tier_for`` as a SQL expression over two columns (``NO_TIER`` below the first tier)."""
    whens = " ".join(
        f"WHEN {revenue} >= {_number(t.min_revenue)} OR {orders} >= {t.min_orders} THEN {_quote(t.name)}"
        for t in reversed(tiers)
    )
    return f"CASE {whens} ELSE {_quote(NO_TIER)} END"


def tier_order_sql(tier: str, tiers: Sequence[Tier]) -> str:
    """A sort key putting the top tier first and ``NO_TIER`` last."""
    whens = " ".join(f"WHEN {_quote(t.name)} THEN {i}" for i, t in enumerate(reversed(tiers)))
    return f"CASE {tier} {whens} ELSE {len(tiers)} END"


@immutable
class Segment:
    name: str
    r: tuple[int, int]  # recency score range, inclusive
    f: tuple[int, int]  # frequency score range, inclusive


# The usual RFM grid over recency and frequency scores; every (r, f) cell is named exactly once.
RFM_GRID = (
    Segment("champions", (5, 5), (4, 5)),
    Segment("loyal", (3, 4), (4, 5)),
    Segment("potential_loyalist", (4, 5), (2, 3)),
    Segment("new", (5, 5), (1, 1)),
    Segment("promising", (4, 4), (1, 1)),
    Segment("need_attention", (3, 3), (3, 3)),
    Segment("about_to_sleep", (3, 3), (1, 2)),
    Segment("cannot_lose", (1, 2), (5, 5)),
    Segment("at_risk", (1, 2), (3, 4)),
    Segment("hibernating", (1, 2), (1, 2)),
)


def rfm_segment(r: int, f: int) -> str:
    for seg in RFM_GRID:
        if seg.r[0] <= r <= seg.r[1] and seg.f[0] <= f <= seg.f[1]:
            return seg.name
    raise ValueError(f"RFM scores out of range: r={r}, f={f}")


def rfm_segment_sql(r: str, f: str) -> str:
    """``rfm_segment`` as a SQL expression over the two score columns."""
    whens = " ".join(
        f"WHEN {r} BETWEEN {s.r[0]} AND {s.r[1]} AND {f} BETWEEN {s.f[0]} AND {s.f[1]} THEN {_quote(s.name)}"
        for s in RFM_GRID
    )
    return f"CASE {whens} END"


def is_active(last_activity_ms: int | None, now_ms: int, days: int) -> bool:
    """Active: some activity (e-mail aside) less than ``days`` days before ``now``."""
    return last_activity_ms is not None and now_ms - last_activity_ms < days * DAY_MS


def active_sql(last_activity: str, now: str, days: str) -> str:
    """``is_active`` as a SQL expression (timestamps; ``days`` an integer expression)."""
    return f"coalesce({last_activity} > {now} - to_days({days}), false)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number(value: float) -> str:
    return "'inf'::DOUBLE" if value == float("inf") else repr(float(value))
