"""Sessions for every identity and the identity guards, through the worker stage on the in-memory runtime.

Session key: the anonymous id, else the user id; a server-side event (user id only) joins the
open visit of a device signed in as that customer on its partition, else starts its own.
Guards: blocklisted ids and devices beyond the per-customer limit link nothing, are counted and
dead-lettered (once per device and refusal) with reason ``identity_rejected``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.processors.test_worker_core import Harness, at, settings, visit
from tests.processors.worker_support import raw_event


def server(mid: str, user: str, seconds: float, **fields: Any) -> dict[str, Any]:
    return raw_event(mid, None, at(seconds), user_id=user, channel="server", **fields)


def signed_in(mid: str, device: str, user: str, seconds: float) -> dict[str, Any]:
    return raw_event(mid, device, at(seconds), type="track", event="Signed In", user_id=user)


def order(order_id: str, revenue: float) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "commerce": {"order_id": order_id, "revenue": revenue},
    }


def closed(h: Harness) -> dict[str, dict[str, Any]]:
    h.sweep()
    return {s["session_id"]: s for s in h.decoded("sessions")}


def test_user_id_only_events_get_their_own_session_with_page_views() -> None:
    h = Harness()
    h.feed(*(server(f"s{i}", "ada", i * 10, type="page") for i in range(3)))
    (session,) = closed(h).values()
    assert (session["anonymous_id"], session["customer_id"]) == ("ada", "ada")
    assert (session["event_count"], session["page_view_count"]) == (3, 3)
    assert set(h.sessions_of()) == {"s0", "s1", "s2"}
    assert {r["enrichment"]["customer_id"] for r in h.decoded("enriched")} == {"ada"}


def test_a_device_that_signs_in_mid_visit_keeps_one_session() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 2), signed_in("in", "dev-a", "ada", 20))
    h.feed(raw_event("b0", "dev-a", at(30), user_id="ada"), raw_event("b1", "dev-a", at(40)))
    (session,) = closed(h).values()
    assert (session["anonymous_id"], session["customer_id"], session["event_count"]) == ("dev-a", "ada", 5)
    assert len(set(h.sessions_of().values())) == 1


def test_a_server_event_joins_the_customers_open_visit_on_its_partition() -> None:
    h = Harness()
    h.feed(signed_in("in", "dev-a", "ada", 0), raw_event("p1", "dev-a", at(10)))
    h.feed(server("srv", "ada", 15, **order("A-1", 30.0)))
    h.feed(server("srv-again", "ada", 16, **order("A-1", 30.0)))  # a client retry: one order
    h.feed(raw_event("p2", "dev-a", at(20)))
    (session,) = closed(h).values()
    assert (session["anonymous_id"], session["event_count"], session["revenue"]) == ("dev-a", 5, 30.0)
    assert session["converted"] and len(set(h.sessions_of().values())) == 1


def test_a_server_event_without_an_open_visit_here_starts_its_own() -> None:
    h = Harness()
    h.feed(signed_in("in", "dev-a", "ada", 0))
    h.feed(raw_event("far", "dev-b", at(500)))  # the watermark passes dev-a's visit: closed
    h.feed(server("srv", "ada", 505))
    h.feed(signed_in("in-c", "dev-c", "ada", 0), partition=1)  # ada's visit on another partition
    h.feed(server("srv-1", "ada", 5), partition=1)  # same partition, open: joins it
    h.feed(server("srv-0", "bob", 506))  # bob has no device at all
    sessions = closed(h)
    keys = sorted((s["anonymous_id"], s["event_count"]) for s in sessions.values())
    assert keys == [("ada", 1), ("bob", 1), ("dev-a", 1), ("dev-b", 1), ("dev-c", 2)]


def test_a_shared_device_signed_in_as_someone_else_is_not_joined() -> None:
    h = Harness()
    h.feed(signed_in("in", "kiosk", "ada", 0), signed_in("in2", "kiosk", "bob", 10))
    h.feed(server("srv", "ada", 15))
    owners = {s["anonymous_id"] for s in closed(h).values()}
    assert owners == {"kiosk", "ada"}


def dead(h: Harness) -> list[dict[str, Any]]:
    return [d for d in h.decoded("deadletter") if d["reason"] == "identity_rejected"]


def test_thirty_devices_identifying_as_undefined_link_nothing() -> None:
    h = Harness()
    for d in range(30):
        h.feed(raw_event(f"i{d}", f"dev-{d}", at(d), type="identify", user_id="undefined"), partition=d % 2)
        h.feed(raw_event(f"p{d}", f"dev-{d}", at(d + 1), user_id="undefined"), partition=d % 2)
    assert h.decoded("identity") == []
    letters = dead(h)
    assert len(letters) == 30  # once per device, not per event
    details = [json.loads(d["detail"]) for d in letters]
    assert {(x["rule"], x["field"], x["value"]) for x in details} == {("blocklist", "user_id", "undefined")}
    assert {d["stage"] for d in letters} == {"worker"}
    rejected = h.core.metrics.identity_rejected.labels("blocklist", "user_id")._value.get()
    assert rejected == 60  # every refused event is counted
    assert {r["enrichment"]["customer_id"] for r in h.decoded("enriched")} == {None}
    assert len(closed(h)) == 30  # each device keeps its own visit
    assert h.core.metrics.events.labels("dead_letter")._value.get() == 0  # no event was lost


def test_junk_ids_of_every_kind_are_refused() -> None:
    h = Harness()
    h.feed(
        raw_event("a", "dev-a", at(0), type="identify", user_id=" NULL "),
        raw_event("b", "dev-b", at(0), type="identify", user_id="0000-0000"),
        raw_event("c", "dev-c", at(0), type="identify", user_id="test@example.com"),
        raw_event("d", "00000000-0000-0000-0000-000000000000", at(0), type="identify", user_id="ada"),
        raw_event("e", None, at(0), type="alias", user_id="ada", previous_id="guest"),
        server("f", "anonymous", 0),
    )
    fields = [json.loads(d["detail"])["field"] for d in dead(h)]
    assert fields == ["user_id", "user_id", "user_id", "anonymous_id", "previous_id", "user_id"]
    assert h.decoded("identity") == []
    # No session for the junk ids; the junk device's identify is left with a user id only: no visit.
    assert {s["anonymous_id"] for s in closed(h).values()} == {"dev-a", "dev-b", "dev-c"}


def test_a_customer_links_at_most_five_devices_a_week_on_a_partition() -> None:
    h = Harness()
    for d in range(7):
        h.feed(signed_in(f"i{d}", f"dev-{d}", "shared-42", d))
    h.feed(raw_event("again", "dev-6", at(10), user_id="shared-42"))  # reported once
    links = h.decoded("identity")
    assert sorted(link["anonymous_id"] for link in links) == [f"dev-{d}" for d in range(5)]
    details = [json.loads(d["detail"]) for d in dead(h)]
    assert [(x["rule"], x["field"], x["value"], x["anonymous_id"], x["linked_devices"]) for x in details] == [
        ("device_limit", "user_id", "shared-42", "dev-5", 5),
        ("device_limit", "user_id", "shared-42", "dev-6", 5),
    ]
    h.sweep()
    enriched = {r["message_id"]: r["enrichment"]["customer_id"] for r in h.decoded("enriched")}
    assert (enriched["i4"], enriched["i5"], enriched["again"]) == ("shared-42", None, None)
    # A week later the old links have left the window: a new device links again.
    week = 7 * 24 * 3600
    h.feed(signed_in("late", "dev-7", "shared-42", week + 60))
    assert h.decoded("identity")[-1]["anonymous_id"] == "dev-7"


def test_the_limit_counts_per_partition_and_survives_a_restart() -> None:
    h = Harness()
    for d in range(5):
        h.feed(signed_in(f"i{d}", f"dev-{d}", "ada", d))
    h.feed(signed_in("other", "dev-p1", "ada", 6), partition=1)  # another partition: own count
    assert len(h.decoded("identity")) == 6
    twin = h.restarted()
    twin.feed(signed_in("sixth", "dev-5", "ada", 7))
    assert [json.loads(d["detail"])["rule"] for d in dead(twin)] == ["device_limit"]
    twin.feed(server("srv", "ada", 8))  # the rebuilt index still finds ada's open visit
    sessions = closed(twin)
    assert all(s["anonymous_id"] != "ada" for s in sessions.values())


def test_guards_are_configurable() -> None:
    base = settings()
    worker = base.worker.model_copy(
        update={"identity_blocked_values": ["house-test"], "identity_device_limit": 0}
    )
    h = Harness(base.model_copy(update={"worker": worker}))
    for d in range(8):
        h.feed(signed_in(f"i{d}", f"dev-{d}", "undefined", d))
    h.feed(signed_in("x", "dev-x", "House-Test", 9))
    assert len(h.decoded("identity")) == 8
    assert [json.loads(d["detail"])["value"] for d in dead(h)] == ["House-Test"]


def test_state_of_a_refused_device_round_trips() -> None:
    h = Harness()
    h.feed(raw_event("i", "dev-a", at(0), type="identify", user_id="null"))
    twin = h.restarted()
    twin.feed(raw_event("j", "dev-a", at(1), type="identify", user_id="null"))
    assert dead(twin) == []  # already reported before the restart
    assert twin.core.devices["dev-a"].identity.rejected == ("blocklist|user_id|null",)


def test_server_side_profile_calls_and_email_events_are_no_visit() -> None:
    h = Harness()
    h.feed(
        server("crm-1", "ada", 0, type="identify"),
        server("crm-2", "ada", 1, type="group", group_id="acme"),
        raw_event("al", None, at(2), type="alias", user_id="ada", previous_id="ada-old"),
        raw_event("mail", None, at(3), type="track", event="Email Opened", user_id="ada", channel="email"),
    )
    assert {r["message_id"] for r in h.decoded("enriched")} == {"crm-1", "crm-2", "al", "mail"}
    assert closed(h) == {} and list(h.devices) == [b"ada"]  # ada's duplicate memory, no visit
    ada = h.core.devices["ada"]
    assert ada.visitless and ada.session is not None and ada.session.current is None
    (link,) = h.decoded("identity")
    assert (link["anonymous_id"], link["customer_id"], link["source_type"]) == ("ada-old", "ada", "alias")
