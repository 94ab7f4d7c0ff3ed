"""Customer profiles: folded from events and sessions, merged on stitching, written as Avro."""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.event_view import event_view
from pipeline.serde import SingleObjectSerde
from pipeline.settings import TriggerSettings
from triggers.events import session_view
from triggers.profile import Profile, apply_event, apply_session, merge, profile_fields, tier_for, to_record

from .builders import at, consent, event, harness, ms, order, session

TIERS = TriggerSettings().value_tiers


def fold(*records: dict) -> Profile:
    profile = Profile("c-1")
    for record in records:
        view = event_view(record)
        assert view is not None
        profile = apply_event(profile, view, TIERS)
    return profile


def test_rfm_parts_categories_and_tier() -> None:
    p = fold(
        event("Page Viewed", at(0), call="page"),
        order(at(10), revenue=300.0, products=["b-1", "b-2"], category="books"),
        order(at(0, days=3), revenue=250.5, products=["m-1"], category="music"),
    )
    assert (p.orders, p.lifetime_revenue, p.value_tier) == (2, 550.5, "silver")
    assert (p.first_order_at, p.last_order_at) == (ms(at(10)), ms(at(0, days=3)))
    assert p.categories_bought == {"books": 1, "music": 1}
    assert p.products_bought == ("b-1", "b-2", "m-1")
    assert (p.first_seen, p.last_seen, p.event_count) == (ms(at(0)), ms(at(0, days=3)), 3)
    fields = profile_fields(p, ms(at(0, days=10)), TIERS)
    assert (fields["days_since_last_order"], fields["tier_rank"], fields["average_order_value"]) == (
        7,
        1,
        275.25,
    )


def test_consent_and_email_engagement() -> None:
    p = fold(
        consent(at(0)),
        event("Email Opened", at(5), channel="email"),
        consent(at(10), granted=False),
        consent(at(7)),  # older than the withdrawal: does not override it
    )
    assert p.consent == {"marketing_email": False}
    assert (p.last_email_engagement, p.last_email_event) == (ms(at(5)), "Email Opened")
    assert p.last_seen == ms(at(10))  # e-mail events are not visits


def test_tiers_by_revenue_or_orders() -> None:
    assert tier_for(0, 0, TIERS) is None
    assert tier_for(499.0, 4, TIERS) is None
    assert tier_for(10.0, 5, TIERS) == "silver"
    assert tier_for(2500.0, 1, TIERS) == "gold"
    assert tier_for(10_000.0, 1, TIERS) == "vip"


def test_sessions_count_and_merge_adds_up() -> None:
    customer = apply_session(fold(order(at(0), revenue=400.0)), session_view(session(at(0), at(5))))
    anonymous = Profile("dev-1")
    view = event_view(order(at(1, days=1), customer=None, anon="dev-1", revenue=200.0))
    assert view is not None
    anonymous = apply_event(anonymous, view, TIERS)
    merged = merge(customer, anonymous, TIERS)
    assert (merged.orders, merged.lifetime_revenue, merged.sessions) == (2, 600.0, 1)
    assert merged.value_tier == "silver"
    assert "dev-1" in merged.anonymous_ids


def test_profile_record_encodes_with_the_avro_schema() -> None:
    h = harness()
    h.event(consent(at(0)))
    h.event(order(at(1), revenue=99.0, products=["b-1"]))
    serde = SingleObjectSerde("profile")
    record = to_record(h.states["c-1"].profile)
    decoded = serde.decode(serde.encode(record))
    assert decoded["orders"] == 1 and decoded["consent"] == {"marketing_email": True}
    assert decoded["last_order_at"] == at(1)


def test_alert_record_round_trips_through_avro() -> None:
    from triggers.alerts import Alert

    h = harness()
    h.event(consent(at(0)))
    alerts = h.event(order(at(1), products=["b-1"], category="books"))
    serde = SingleObjectSerde("alert")
    for alert in alerts:
        assert Alert.from_record(serde.decode(serde.encode(alert.to_record()))) == alert


def test_a_retried_order_counts_once_in_the_profile_and_the_rules() -> None:
    """A client retry: a fresh message id, the same order id (real SDKs do this)."""
    h = harness()
    h.event(consent(at(0)))
    h.event(order(at(10), revenue=80.0, order_id="o-77"))
    assert h.event(event("Order Completed", at(11), revenue=80.0, order_id="o-77", products=["p-1"])) == []
    profile = h.states["c-1"].profile
    assert (profile.orders, profile.lifetime_revenue) == (1, 80.0)
    h.event(order(at(20), revenue=20.0))
    assert (h.states["c-1"].profile.orders, h.states["c-1"].profile.lifetime_revenue) == (2, 100.0)


def test_a_retried_order_on_a_device_and_its_customer_counts_once_after_the_merge() -> None:
    h = harness()
    h.event(order(at(10), customer=None, anon="dev-1", revenue=80.0, order_id="o-78"))
    retry = event(
        "Order Completed", at(11), "c-1", anon="dev-1", revenue=80.0, order_id="o-78", products=["p-1"]
    )
    h.event(retry)  # signed in meanwhile: the device's state moves to c-1, then the retry is read
    assert "dev-1" not in h.states  # merged
    assert (h.states["c-1"].profile.orders, h.states["c-1"].profile.lifetime_revenue) == (1, 80.0)


def test_the_rules_view_is_every_field_built_on_reading() -> None:
    """``profile_fields`` builds each field when read: the same names and values a built dict
    had, lists as lists, and copies that a reader cannot change the profile through."""
    p = Profile("c-1", anonymous_ids=("a-1",), orders=2, lifetime_revenue=101.0,
                categories_bought={"music": 1, "books": 2}, products_bought=("b-1",))  # fmt: skip
    fields = profile_fields(p, 0, TIERS)
    assert dict(fields) == {
        **p.to_dict(),
        "days_since_last_seen": None,
        "days_since_last_order": None,
        "days_since_email_engagement": None,
        "tier_rank": 0,
        "average_order_value": 50.5,
        "categories": ["books", "music"],
    }
    assert "tier_rank" in fields and "nothing" not in fields and fields.get("nothing") is None
    fields["products_bought"].append("b-2")
    fields["categories_bought"]["toys"] = 1
    assert (p.products_bought, p.categories_bought) == (("b-1",), {"music": 1, "books": 2})


def test_the_rules_view_of_an_event_is_every_field_built_on_reading() -> None:
    """``EventView.fields``: its ``to_dict`` plus ``product_id`` and ``category``, each built
    when read, lists and properties as copies."""
    view = event_view(order(at(10), revenue=30.0, products=["b-1", "b-2"], category="books"))
    assert view is not None
    fields = view.fields()
    assert dict(fields) == {**view.to_dict(), "product_id": "b-1", "category": "books"}
    assert "product_id" in fields and "nothing" not in fields and fields.get("nothing") is None
    fields["product_ids"].append("b-3")
    fields["properties"]["x"] = 1
    assert view.product_ids == ("b-1", "b-2") and "x" not in view.properties


def test_changed_is_dataclasses_replace() -> None:
    """``Profile.changed`` skips ``replace``'s checks, not its meaning: every other field is kept."""
    profile = Profile("c-1", ("d-1",), first_seen=1, event_count=3, consent={"email": True}, version=2)
    changes: dict[str, Any] = {
        "event_count": 4,
        "last_seen": 9,
        "categories_bought": {"shoes": 1},
        "version": 3,
    }
    assert profile.changed(changes) == dataclasses.replace(profile, **changes)
    assert profile.changed({}) == profile and profile.event_count == 3
