"""The device state survives its trip through the devices changelog unchanged."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ProcessingError
from pipeline.fingerprint import id_fingerprint
from processors.sessions import DeviceState
from processors.sessions.stream import add_event, advance
from tests.processors.sessions.helpers import WorkerSessionizer, ev, policy


def test_state_round_trips_through_bytes_mid_visit() -> None:
    pol = policy(split_at_midnight=True, timezone="Europe/Berlin")
    sessionizer = WorkerSessionizer(pol)
    events = [
        ev("a", 0, is_page_view=True, page="/", utm_source="news", utm_medium="email", utm_campaign="c1"),
        ev("b", 1, products_viewed=("p1", "p2"), customer_id="c-9", payload=b"\x00raw"),
        ev("c", 9, event_name="Order Completed", products_bought=("p1",), revenue=12.5, payload=b"x"),
        ev("d", 8, browser_family="Firefox"),
    ]
    sessionizer.process_many(events)
    state = sessionizer.states["d1"]
    assert state.current is not None and state.buffer  # a visit open and events waiting
    restored = DeviceState.from_bytes(state.to_bytes())
    assert restored == state
    assert [e.payload for e in restored.buffer] == [e.payload for e in state.buffer]


def test_the_duplicate_memory_is_stored_as_fingerprints_not_ids() -> None:
    sessionizer = WorkerSessionizer(policy())
    message_id = "5b0b1a0e-7c0e-4b7e-9d63-3f1f2b9d0c11"
    sessionizer.process_many([ev(message_id, 0)])
    stored = json.loads(sessionizer.states["d1"].to_bytes())
    assert stored["seen"] == [id_fingerprint(message_id)] and "recent" not in stored
    assert message_id not in json.dumps(stored["seen"])


def test_a_state_stored_before_the_fingerprints_still_knows_its_ids() -> None:
    pol = policy()
    first = ev("a", 0)
    state, _ = add_event(None, first, first.time_ms, pol)
    state, _ = advance(state, first.time_ms + 1, pol)  # "a" released: only the memory knows it
    assert not state.buffer
    stored = state.to_dict()
    del stored["seen"]
    old = DeviceState.from_dict({**stored, "v": 1, "recent": ["a"]})
    _, outputs = add_event(old, ev("a", 0), first.time_ms + 1, pol)
    assert [type(o).__name__ for o in outputs] == ["DuplicateEvent"]


def test_a_state_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(ProcessingError):
        DeviceState.from_dict({"v": 3, "device": "d1", "wm": 0, "cur": None, "cid": None, "seen": []})
