"""The trigger stage honours erasures: a forgotten customer's states, windows and profile go; inputs
from before the erasure (replays, late ones) rebuild nothing; a new input starts an empty profile."""

from __future__ import annotations

import json
from typing import cast

from pipeline.erasure import Erasure
from pipeline.runtime.stage import Record

from .builders import at, consent, event, ms, session
from .test_core import PROFILES, Bus


def old_life(bus: Bus) -> list[dict]:
    """Consent, a cart on device a-1, an order history: what c-1 did before being forgotten."""
    records = [
        consent(at(0)),
        event("Product Added", at(1), products=["p-1"]),
        event("Order Completed", at(2), products=["p-9"], revenue=80.0, order_id="o-1"),
    ]
    for record in records:
        bus.event(record)
    return records


def profiles(bus: Bus) -> list[tuple[bytes, dict | None]]:
    """The profiles published, in order: (customer key, profile or None for a tombstone)."""
    return [
        (cast(bytes, o.key), PROFILES.decode(o.value) if o.value else None)
        for o in bus.log.get(bus.topics.profiles, [])
    ]


def forget(bus: Bus, minutes: float, customer: str = "c-1", *devices: str) -> None:
    """An erasure record on the erasures topic, which both stages read whole (``on_broadcast``)."""
    erasure = Erasure(customer, devices or ("a-1",), at(minutes))
    bus.local.broker.append(Record(bus.topics.erasures, customer.encode(), erasure.to_bytes()))
    bus.local.run()


def test_forgetting_drops_the_states_and_their_open_windows_and_tombstones_the_profiles() -> None:
    bus = Bus()
    old_life(bus)
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))  # opens a cart window
    bus.event(event("Page Viewed", at(3), customer="c-2", anon="a-2", call="page"))
    assert {b"c-1", b"c-2"} <= set(bus.table)
    published = len(profiles(bus))

    forget(bus, 30)

    assert b"c-1" not in bus.table and b"a-1" not in bus.table and b"c-2" in bus.table
    assert sorted(k for k, v in profiles(bus)[published:] if v is None) == [b"a-1", b"c-1"]
    assert b"c-1" not in bus.core.due
    bus.sweep(ms(at(0, hours=3)))
    assert [a for a in bus.alerts() if a["rule_id"] == "cart_abandonment"] == []  # went with the state


def test_replayed_and_late_inputs_from_before_the_erasure_rebuild_nothing() -> None:
    bus = Bus()
    records = old_life(bus)
    old_session = session(at(0), at(5), added=["p-1"], session_id="s-1")
    bus.session(old_session)
    forget(bus, 30)
    published, alerts = len(profiles(bus)), len(bus.alerts())

    for record in records:  # a replay of the enriched topic
        bus.event(record)
    bus.session(old_session)
    late = event("Product Viewed", at(10), products=["p-1"])
    late["received_at"] = at(40)  # happened before the forget, arrived after
    bus.event(late)
    for partition in range(bus.local.broker.partitions):  # and a replay of the triggers topic itself
        bus.local.evaluate.committed[(bus.topics.triggers_input, partition)] = 0
    bus.local.run()
    bus.sweep(ms(at(0, hours=3)))

    assert not {b"c-1", b"a-1"} & set(bus.table)
    assert profiles(bus)[published:] == [] and len(bus.alerts()) == alerts


def test_a_new_event_after_the_erasure_starts_an_empty_profile() -> None:
    bus = Bus()
    old_life(bus)
    forget(bus, 30)
    bus.event(event("Page Viewed", at(60), call="page"))  # c-1 comes back on the same device
    bus.event(consent(at(0)))  # and an old consent is replayed after
    state = json.loads(bus.table[b"c-1"])
    profile = state["profile"]
    assert (profile["event_count"], profile["orders"], profile["lifetime_revenue"]) == (1, 0, 0.0)
    assert profile["consent"] == {} and state["history"] == [] and state["consents"] == []
    latest = profiles(bus)[-1][1]
    assert latest is not None and (latest["customer_id"], latest["event_count"], latest["orders"]) == (
        "c-1",
        1,
        0,
    )


def test_a_device_linked_again_after_the_erasure_is_handed_over_again() -> None:
    bus = Bus()
    bus.event(event("Product Added", at(1), customer=None, anon="dev-9", products=["p-1"]))
    bus.event(consent(at(2), anon="dev-9"))  # dev-9 signs in as c-1: handed over
    forget(bus, 30, "c-1", "dev-9")
    bus.event(event("Product Viewed", at(40), customer=None, anon="dev-9", products=["p-2"]))
    bus.event(event("Page Viewed", at(41), anon="dev-9", call="page"))  # signs in again
    state = json.loads(bus.table[b"c-1"])
    assert state["profile"]["event_count"] == 2  # the new anonymous view came along, nothing older
    assert json.loads(bus.table[b"dev-9"])["moved_to"] == "c-1"
