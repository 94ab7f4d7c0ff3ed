"""Customer profiles: pure state, folded from events and sessions, merged on stitching.

A profile is keyed like everything in triggers/: the stitched customer id, or the
anonymous id while none is known. ``apply_event`` / ``apply_session`` return a new
profile (the old one is what profile-change rules compare against); ``merge`` folds
an anonymous profile into the customer's when the identity map links them.

RFM is kept as its raw parts (recency = last order time, frequency = orders,
monetary = lifetime revenue); scores are relative to "now" and computed where a
"now" is known (``profile_fields``), never stored as if they stayed true.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, fields
from operator import attrgetter
from typing import Any

from pipeline.business import tier_for  # the one definition of value tiers (and VIP)
from pipeline.event_view import EventView, LazyFields, from_ms
from pipeline.immutable import immutable
from pipeline.settings import ValueTierSettings
from triggers.events import CONSENT_GRANTED, CONSENT_WITHDRAWN, EMAIL_ENGAGEMENT, ORDER_EVENT, SessionView

DAY_MS = 24 * 3600 * 1000
MAX_PRODUCTS = 100


@immutable
class Profile:
    customer_id: str
    anonymous_ids: tuple[str, ...] = ()
    first_seen: int | None = None
    last_seen: int | None = None  # any channel but e-mail
    last_event_id: str | None = None  # the latest event by (time, id), whatever order they came in
    last_event_at: int | None = None
    event_count: int = 0
    sessions: int = 0
    orders: int = 0
    lifetime_revenue: float = 0.0
    first_order_at: int | None = None
    last_order_at: int | None = None
    categories_bought: dict[str, int] = field(default_factory=dict)
    products_bought: tuple[str, ...] = ()
    last_email_engagement: int | None = None
    last_email_event: str | None = None
    consent: dict[str, bool] = field(default_factory=dict)
    consent_updated_at: int | None = None
    value_tier: str | None = None
    updated_at: int | None = None
    version: int = 0  # versions of this key published so far; the record carries its own number

    def to_dict(self) -> dict[str, Any]:
        # Hand-built: dataclasses.asdict deep-copies and was most of the per-event cost.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["anonymous_ids"] = list(self.anonymous_ids)
        data["products_bought"] = list(self.products_bought)
        data["categories_bought"] = dict(self.categories_bought)
        data["consent"] = dict(self.consent)
        return data

    def changed(self, changes: Mapping[str, Any]) -> Profile:
        """A copy with ``changes``: ``dataclasses.replace`` without its per-field checks, which
        cost as much as the copy (a profile changes at every event: 8% of the evaluate stage)."""
        values = list(_VALUES(self))
        for name, value in changes.items():
            values[_POSITION[name]] = value
        return Profile(*values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        values = dict(data)
        values["anonymous_ids"] = tuple(values.get("anonymous_ids") or ())
        values["products_bought"] = tuple(values.get("products_bought") or ())
        return cls(**values)


_FIELDS = tuple(f.name for f in fields(Profile))
_VALUES = attrgetter(*_FIELDS)
_POSITION = {name: i for i, name in enumerate(_FIELDS)}


def tier_rank(tier: str | None, tiers: Sequence[ValueTierSettings]) -> int:
    """0 below the first tier, 1 for the first, and so on."""
    names = [t.name for t in tiers]
    return names.index(tier) + 1 if tier in names else 0


def _add_unique(items: tuple[str, ...], new: Sequence[str], limit: int) -> tuple[str, ...]:
    kept = [i for i in items if i not in new]
    return tuple([*kept, *dict.fromkeys(new)][-limit:])


def apply_event(profile: Profile, event: EventView, tiers: Sequence[ValueTierSettings]) -> Profile:
    """The profile after one (non-bot) event."""
    changes: dict[str, Any] = {
        "event_count": profile.event_count + 1,
        "updated_at": max(profile.updated_at or event.time, event.time),
        "first_seen": min(profile.first_seen or event.time, event.time),
    }
    if (event.time, event.message_id) > (_or(profile.last_event_at, -1), profile.last_event_id or ""):
        changes.update(last_event_id=event.message_id, last_event_at=event.time)
    if event.anonymous_id and event.anonymous_id not in profile.anonymous_ids:
        changes["anonymous_ids"] = (*profile.anonymous_ids, event.anonymous_id)
    if event.channel != "email":
        changes["last_seen"] = max(profile.last_seen or event.time, event.time)
    if event.name in EMAIL_ENGAGEMENT:
        changes["last_email_engagement"] = max(profile.last_email_engagement or event.time, event.time)
        changes["last_email_event"] = event.name
    if event.name in (CONSENT_GRANTED, CONSENT_WITHDRAWN) and event.consent_purposes:
        granted = event.name == CONSENT_GRANTED
        if profile.consent_updated_at is None or event.time >= profile.consent_updated_at:
            changes["consent"] = {**profile.consent, **dict.fromkeys(event.consent_purposes, granted)}
            changes["consent_updated_at"] = event.time
    if event.name == ORDER_EVENT:
        orders = profile.orders + 1
        revenue = round(profile.lifetime_revenue + (event.revenue or 0.0), 2)
        categories = dict(profile.categories_bought)
        for category in event.categories:
            categories[category] = categories.get(category, 0) + 1
        changes.update(
            orders=orders,
            lifetime_revenue=revenue,
            first_order_at=min(profile.first_order_at or event.time, event.time),
            last_order_at=max(profile.last_order_at or event.time, event.time),
            categories_bought=categories,
            products_bought=_add_unique(profile.products_bought, event.product_ids, MAX_PRODUCTS),
            value_tier=tier_for(revenue, orders, tiers),
        )
    return profile.changed(changes)


def apply_session(profile: Profile, session: SessionView) -> Profile:
    """The profile after one closed session."""
    anonymous_ids = profile.anonymous_ids
    if session.anonymous_id not in anonymous_ids:
        anonymous_ids = (*anonymous_ids, session.anonymous_id)
    return profile.changed(
        {
            "sessions": profile.sessions + 1,
            "anonymous_ids": anonymous_ids,
            "first_seen": min(profile.first_seen or session.start, session.start),
            "last_seen": max(profile.last_seen or session.end, session.end),
            "updated_at": max(profile.updated_at or session.end, session.end),
        }
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _min(a: int | None, b: int | None) -> int | None:
    return min(x for x in (a, b) if x is not None) if a is not None or b is not None else None


def _max(a: int | None, b: int | None) -> int | None:
    return max(x for x in (a, b) if x is not None) if a is not None or b is not None else None


def merge(into: Profile, other: Profile, tiers: Sequence[ValueTierSettings]) -> Profile:
    """Fold ``other`` (an anonymous profile) into ``into`` (the customer's); counts add up."""
    categories = dict(into.categories_bought)
    for category, count in other.categories_bought.items():
        categories[category] = categories.get(category, 0) + count
    newer_consent = (other.consent_updated_at or -1) > (into.consent_updated_at or -1)
    consent = {**into.consent, **other.consent} if newer_consent else {**other.consent, **into.consent}
    orders = into.orders + other.orders
    revenue = round(into.lifetime_revenue + other.lifetime_revenue, 2)
    last_seen = _max(into.last_seen, other.last_seen)
    latest = max(into, other, key=lambda p: (_or(p.last_event_at, -1), p.last_event_id or ""))
    return into.changed(
        {
            "anonymous_ids": tuple(
                dict.fromkeys((*into.anonymous_ids, *other.anonymous_ids, other.customer_id))
            ),
            "first_seen": _min(into.first_seen, other.first_seen),
            "last_seen": last_seen,
            "last_event_id": latest.last_event_id,
            "last_event_at": latest.last_event_at,
            "event_count": into.event_count + other.event_count,
            "sessions": into.sessions + other.sessions,
            "orders": orders,
            "lifetime_revenue": revenue,
            "first_order_at": _min(into.first_order_at, other.first_order_at),
            "last_order_at": _max(into.last_order_at, other.last_order_at),
            "categories_bought": categories,
            "products_bought": _add_unique(other.products_bought, into.products_bought, MAX_PRODUCTS),
            "last_email_engagement": _max(into.last_email_engagement, other.last_email_engagement),
            "consent": consent,
            "consent_updated_at": _max(into.consent_updated_at, other.consent_updated_at),
            "value_tier": tier_for(revenue, orders, tiers),
            "updated_at": _max(into.updated_at, other.updated_at),
        }
    )


def _days(since: int | None, now: int) -> int | None:
    return None if since is None else max(0, (now - since) // DAY_MS)


# The only fields of the rules' namespace that move with time: whole days since a stored time.
DAY_COUNTERS = {
    "days_since_last_seen": "last_seen",
    "days_since_last_order": "last_order_at",
    "days_since_email_engagement": "last_email_engagement",
}


def next_day_change(since: int, after: int) -> int:
    """The first time after ``after`` at which ``_days(since, ...)`` moves on."""
    return since + (max(0, (after - since) // DAY_MS) + 1) * DAY_MS


_COPIED: dict[str, Callable[[Any], Any]] = {
    "anonymous_ids": list, "products_bought": list, "categories_bought": dict, "consent": dict,
}  # fmt: skip
_STORED = frozenset(_FIELDS)
_NAMES = (*_FIELDS, *DAY_COUNTERS, "tier_rank", "average_order_value", "categories")


class ProfileFields(LazyFields):
    """The ``profile.*`` / ``previous.*`` namespace of rules: the stored fields plus the
    'now'-relative ones (``DAY_COUNTERS``). Each is built when a rule reads it: rules read a few
    of its ~30 fields, and building them all, twice per input, was ~11% of the evaluate stage
    (issue 11). Lists and dicts come as fresh copies, as a built dict gave them."""

    __slots__ = ("_now", "_profile", "_tiers")
    names = _NAMES
    known = frozenset(_NAMES)

    def __init__(self, profile: Profile, now: int, tiers: Sequence[ValueTierSettings]) -> None:
        self._profile = profile
        self._now = now
        self._tiers = tiers

    def __getitem__(self, name: str) -> Any:
        profile = self._profile
        if name in _COPIED:
            return _COPIED[name](getattr(profile, name))
        if name in _STORED:
            return getattr(profile, name)
        if name in DAY_COUNTERS:
            return _days(getattr(profile, DAY_COUNTERS[name]), self._now)
        if name == "tier_rank":
            return tier_rank(profile.value_tier, self._tiers)
        if name == "average_order_value":
            return round(profile.lifetime_revenue / profile.orders, 2) if profile.orders else None
        if name == "categories":
            return sorted(profile.categories_bought)
        raise KeyError(name)


def profile_fields(profile: Profile, now: int, tiers: Sequence[ValueTierSettings]) -> ProfileFields:
    """The rules' view of a profile at ``now`` (``ProfileFields``)."""
    return ProfileFields(profile, now, tiers)


def to_record(profile: Profile, merged_into: str | None = None) -> dict[str, Any]:
    """The Avro record of schemas/profile.avsc."""
    recency = None
    if profile.last_order_at is not None and profile.updated_at is not None:
        recency = _days(profile.last_order_at, profile.updated_at)
    return {
        "customer_id": profile.customer_id,
        "merged_into": merged_into,
        "anonymous_ids": list(profile.anonymous_ids),
        "first_seen": from_ms(profile.first_seen),
        "last_seen": from_ms(profile.last_seen),
        "last_event_id": profile.last_event_id,
        "event_count": profile.event_count,
        "sessions": profile.sessions,
        "orders": profile.orders,
        "lifetime_revenue": profile.lifetime_revenue,
        "average_order_value": round(profile.lifetime_revenue / profile.orders, 2)
        if profile.orders
        else None,
        "last_order_at": from_ms(profile.last_order_at),
        "first_order_at": from_ms(profile.first_order_at),
        "recency_days": recency,
        "categories_bought": dict(profile.categories_bought),
        "products_bought": list(profile.products_bought),
        "last_email_engagement": from_ms(profile.last_email_engagement),
        "last_email_event": profile.last_email_event,
        "consent": dict(profile.consent),
        "consent_updated_at": from_ms(profile.consent_updated_at),
        "value_tier": profile.value_tier,
        "updated_at": from_ms(profile.updated_at),
        "version": profile.version,
    }
