"""The device state survives its trip through the devices changelog unchanged."""

from __future__ import annotations

from processors.sessions import DeviceState
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
