"""A backfill feeds profiles but fires no live marketing alert: events marked ``$imported`` (the
collector's import endpoint) and sessions made of them start no marketing alert, whichever of
the session and its events is read first; live inputs still see the history."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .builders import at, consent, event, ms, session
from .test_core import Bus


def imported(record: dict[str, Any], session_id: str | None = None) -> dict[str, Any]:
    record["properties"] = {"$imported": "true", "$sentAt": '"2025-11-02T09:00:00Z"'}
    record["enrichment"]["session_id"] = session_id
    return record


def cart_visit(history: bool, session_first: bool, flagged: bool = False) -> Bus:
    """Consent, then a visit with an item added and no order: the cart-abandonment case.
    ``flagged``: the worker's way, the event without a session id and the visit flagged
    ``imported``; else the event names its visit (events of workers before the flag)."""
    bus = Bus()
    bus.event(consent(at(0)))
    added = event("Product Added", at(1), products=["p-1"])
    if history:
        added = imported(added, session_id=None if flagged else "s-1")
    visit = session(at(1), at(5), added=["p-1"], session_id="s-1")
    visit["imported"] = history and flagged
    for feed in ((bus.session, visit), (bus.event, added))[:: 1 if session_first else -1]:
        feed[0](feed[1])
    bus.sweep(ms(at(0, hours=3)))
    return bus


@pytest.mark.parametrize("flagged", [False, True])
@pytest.mark.parametrize("session_first", [False, True])
def test_an_imported_cart_fires_no_cart_abandonment_but_a_live_one_does(
    session_first: bool, flagged: bool
) -> None:
    assert cart_visit(history=True, session_first=session_first, flagged=flagged).alerts() == []
    live = cart_visit(history=False, session_first=session_first, flagged=flagged).alerts()
    assert [(a["rule_id"], a["status"]) for a in live] == [("cart_abandonment", "fired")]


def test_imported_events_still_update_the_profile() -> None:
    bus = Bus()
    bus.event(consent(at(0)))
    bus.event(imported(event("Order Completed", at(1), products=["p-1"], revenue=80.0, order_id="o-1")))
    bus.event(imported(event("Page Viewed", at(2), call="page")))
    profile = json.loads(bus.table[b"c-1"])["profile"]
    assert (profile["orders"], profile["lifetime_revenue"], profile["event_count"]) == (1, 80.0, 3)
    assert bus.profiles()[-1]["orders"] == 1
    bus.sweep(ms(at(0, hours=3)))
    assert bus.alerts() == []  # first_purchase is a marketing rule: not for last year's order


def test_imported_views_are_history_a_live_view_can_count_on() -> None:
    def views(history: int, live: int) -> list[dict[str, Any]]:
        bus = Bus()
        bus.event(consent(at(0)))
        for i in range(history + live):
            view = event("Product Viewed", at(1 + i), products=["p-7"])
            bus.event(imported(view) if i < history else view)
        bus.sweep(ms(at(0, hours=3)))
        return [a for a in bus.alerts() if a["rule_id"] == "browse_abandonment"]

    assert views(history=3, live=0) == []  # three views, all history: nobody to nudge now
    assert len(views(history=2, live=1)) == 1  # the live third view decides, on all three
