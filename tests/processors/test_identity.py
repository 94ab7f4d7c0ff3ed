"""Identity stitching: links, shared devices, several devices, late events, state round trip."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.serde import SingleObjectSerde
from processors.identity import CustomerDevices, IdentityGuard, IdentityState, Stitched, stitch

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(mid: str, anon: str | None = "dev-1", user: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"message_id": mid, "type": "track", "event": "Product Viewed", "anonymous_id": anon,
            "user_id": user, **kw}  # fmt: skip


class Device:
    """Feeds events through stitch() the way the worker does, keeping the state per device."""

    def __init__(self) -> None:
        self.states: dict[str, IdentityState] = {}
        self.emitted: list[Any] = []

    def send(self, event: dict[str, Any], minutes: float) -> Stitched:
        key = event.get("anonymous_id") or event.get("user_id") or ""
        result = stitch(self.states.get(key, IdentityState()), event, at(minutes))
        self.states[key] = result.state
        self.emitted.extend(result.changed)
        return result


def test_sign_in_links_the_device_and_later_events_carry_the_customer() -> None:
    d = Device()
    assert d.send(ev("e1"), 0).customer_id is None
    signed = d.send(ev("e2", user="ada", event="Signed In"), 1)
    assert signed.customer_id == "ada"
    (link,) = signed.changed
    assert (link.anonymous_id, link.customer_id, link.source_type, link.source_event_id) == (
        "dev-1",
        "ada",
        "signed_in",
        "e2",
    )
    assert d.send(ev("e3"), 2).customer_id == "ada"
    assert d.send(ev("e3b"), 3).changed == ()  # anonymous events do not move the link


def test_identify_and_alias_link_too() -> None:
    d = Device()
    identify = d.send(ev("i1", user="bob", type="identify", event=None), 0)
    assert identify.changed[0].source_type == "identify"
    alias = d.send(ev("a1", anon=None, user="bob-new", type="alias", event=None, previous_id="dev-9"), 1)
    (link,) = alias.changed
    assert (link.anonymous_id, link.customer_id, link.source_type) == ("dev-9", "bob-new", "alias")


def test_shared_device_latest_sign_in_wins_and_both_links_are_kept() -> None:
    d = Device()
    d.send(ev("s1", user="ada", event="Signed In"), 0)
    assert d.send(ev("p1"), 5).customer_id == "ada"
    d.send(ev("s2", user="bob", event="Signed In"), 10)
    assert d.send(ev("p2"), 15).customer_id == "bob"
    # A late anonymous event from before bob signed in belongs to ada.
    assert d.send(ev("late"), 7).customer_id == "ada"
    state = d.states["dev-1"]
    assert {lk.customer_id for lk in state.links} == {"ada", "bob"}
    # ada signs in again: later events are hers again, her link's last_seen moves.
    again = d.send(ev("s3", user="ada", event="Signed In"), 20)
    assert [(lk.customer_id, lk.first_seen, lk.last_seen) for lk in again.changed] == [("ada", at(0), at(20))]
    assert d.send(ev("p3"), 21).customer_id == "ada"


def test_one_customer_on_several_devices_gets_one_link_per_device() -> None:
    d = Device()
    d.send(ev("w1", anon="laptop", user="ada", event="Signed In"), 0)
    d.send(ev("m1", anon="phone", user="ada", event="Signed Up"), 3)
    assert d.send(ev("w2", anon="laptop"), 4).customer_id == "ada"
    assert d.send(ev("m2", anon="phone"), 4).customer_id == "ada"
    assert sorted((lk.anonymous_id, lk.source_type) for lk in d.emitted) == [
        ("laptop", "signed_in"),
        ("phone", "signed_up"),
    ]
    assert len({lk.key for lk in d.emitted}) == 2


def test_user_id_on_an_event_counts_and_refreshes_the_link() -> None:
    d = Device()
    first = d.send(ev("o1", user="ada", event="Order Completed"), 0)
    assert first.customer_id == "ada" and first.changed[0].source_type == "event"
    assert d.send(ev("o2", user="ada"), 9).changed[0].last_seen == at(9)
    assert d.send(ev("o3", user="ada"), 8).changed == ()  # inside [first, last]: nothing new
    assert d.send(ev("o4", user="ada"), -3).changed[0].first_seen == at(-3)


def test_events_without_an_anonymous_id_use_their_user_id_and_change_no_device() -> None:
    d = Device()
    result = d.send(ev("srv", anon=None, user="ada"), 0)
    assert result.customer_id == "ada" and result.changed == () and not result.state_changed


def test_timeline_is_capped() -> None:
    state = IdentityState()
    for i in range(10):
        state = stitch(state, ev(f"s{i}", user=f"c{i}", event="Signed In"), at(i), history=3).state
    assert [c for _, c in state.timeline] == ["c7", "c8", "c9"]
    assert len(state.links) == 10


def test_state_survives_a_json_round_trip_and_links_encode() -> None:
    d = Device()
    d.send(ev("s1", user="ada", event="Signed In"), 0)
    d.send(ev("s2", user="bob", event="Signed In"), 10)
    state = d.states["dev-1"]
    assert IdentityState.from_json(state.to_json()) == state
    serde = SingleObjectSerde("identity_link")
    for link in d.emitted:
        assert serde.decode(serde.encode(link.to_record()))["customer_id"] == link.customer_id


def test_an_alias_from_a_browser_links_the_previous_id_and_the_device() -> None:
    """analytics.js sends alias with the device's anonymous id and previousId = the old user id."""
    d = Device()
    alias = d.send(ev("a1", user="ada-new", type="alias", event=None, previous_id="ada-old"), 0)
    pairs = sorted((lk.anonymous_id, lk.customer_id, lk.source_type) for lk in alias.changed)
    assert pairs == [("ada-old", "ada-new", "alias"), ("dev-1", "ada-new", "alias")]
    # previousId = the anonymous id itself: one link, the device's.
    same = d.send(ev("a2", anon="dev-2", user="bob", type="alias", event=None, previous_id="dev-2"), 1)
    assert [(lk.anonymous_id, lk.customer_id) for lk in same.changed] == [("dev-2", "bob")]


GUARD = IdentityGuard(frozenset({"undefined", "guest"}), (re.compile(r"[0-]*"),), 2, timedelta(days=7))


@pytest.mark.parametrize(
    ("value", "blocked"),
    [("undefined", True), (" Guest ", True), ("0", True), ("00000000-0000-0000-0000-000000000000", True),
     ("   ", True), ("-", True), ("ada", False), ("0042", False), ("guest-7", False)],
)  # fmt: skip
def test_blocklist_matches_trimmed_case_folded_values_and_patterns(value: str, blocked: bool) -> None:
    assert GUARD.is_blocked(value) is blocked


def test_a_blocked_user_id_links_nothing_and_is_reported_once_per_device() -> None:
    state = IdentityState()
    first = stitch(state, ev("i1", user="Undefined", type="identify"), at(0), guard=GUARD)
    assert (first.changed, first.customer_id, first.user_id) == ((), None, None)
    (rejection,) = first.reported
    assert (rejection.rule, rejection.field, rejection.anonymous_id) == ("blocklist", "user_id", "dev-1")
    again = stitch(first.state, ev("i2", user="undefined", type="identify"), at(1), guard=GUARD)
    assert again.reported == () and len(again.rejections) == 1 and not again.state_changed


def test_the_device_limit_counts_recent_devices_of_the_customer() -> None:
    linked = CustomerDevices()
    for n, minutes in ((1, 0), (2, 1)):
        out = stitch(IdentityState(), ev(f"s{n}", anon=f"dev-{n}", user="ada"), at(minutes), guard=GUARD,
                     linked=linked)  # fmt: skip
        linked.add_state(out.state)
    third = stitch(IdentityState(), ev("s3", anon="dev-3", user="ada"), at(2), guard=GUARD, linked=linked)
    assert third.changed == () and third.customer_id is None
    assert [(r.rule, r.linked_devices) for r in third.reported] == [("device_limit", 2)]
    # A device already linked is never refused; eight days on the window is empty again.
    assert stitch(IdentityState(), ev("s4", anon="dev-1", user="ada"), at(3), guard=GUARD,
                  linked=linked).rejections == ()  # fmt: skip
    later = stitch(IdentityState(), ev("s5", anon="dev-3", user="ada"), at(8 * 24 * 60), guard=GUARD,
                   linked=linked)  # fmt: skip
    assert [lk.anonymous_id for lk in later.changed] == ["dev-3"]


def test_a_shared_device_links_at_most_the_customer_limit_and_the_user_id_stays_the_customer() -> None:
    guard = IdentityGuard(customer_limit=2)
    state = IdentityState()
    for n, user in enumerate(("ada", "bob")):
        state = stitch(state, ev(f"k{n}", anon="kiosk", user=user), at(n), guard=guard).state
    carl = stitch(state, ev("k2", anon="kiosk", user="carl"), at(2), guard=guard)
    assert (carl.changed, carl.customer_id, carl.state_changed) == ((), "carl", True)  # the memo is new
    assert [(r.rule, r.field, r.value, r.linked_customers) for r in carl.reported] == [
        ("customer_limit", "anonymous_id", "kiosk", 2)
    ]
    assert [lk.customer_id for lk in carl.state.links] == ["ada", "bob"]
    dora = stitch(carl.state, ev("k3", anon="kiosk", user="dora"), at(3), guard=guard)
    assert dora.reported == () and len(dora.rejections) == 1 and dora.customer_id == "dora"
    # A customer already linked still is; without a limit the device links them all.
    assert stitch(carl.state, ev("k4", anon="kiosk", user="ada"), at(4), guard=guard).rejections == ()
    assert len(stitch(state, ev("k5", anon="kiosk", user="carl"), at(5)).state.links) == 3


def test_a_late_sign_in_of_another_customer_does_not_hide_a_later_one() -> None:
    d = Device()
    d.send(ev("a1", user="ada"), 0)
    d.send(ev("a2", user="ada"), 2)
    d.send(ev("b1", user="bob"), 1)  # arrives late: bob used the device between ada's two events
    assert [d.send(ev(f"x{m}"), m).customer_id for m in (0.5, 1.5, 3)] == ["ada", "bob", "ada"]
    # Runs of one customer keep their first and last sign-in only.
    for minute in range(10, 40):
        d.send(ev(f"a{minute}", user="ada"), minute)
    assert [c for _, c in d.states["dev-1"].timeline] == ["ada", "bob", "ada", "ada"]


def test_a_lone_junk_anonymous_id_is_no_refusal_but_no_device_either() -> None:
    for user in (None, ""):
        out = stitch(IdentityState(), ev("p", anon="undefined", user=user), at(0), guard=GUARD)
        assert (out.anonymous_id, out.rejections, out.changed) == (None, (), ())
