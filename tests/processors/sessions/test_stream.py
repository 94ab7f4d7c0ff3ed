"""The stream functions' contract with the worker: timing, aggregates, records, errors, schedule."""

from __future__ import annotations

from datetime import datetime

import pytest

import processors.sessions
from pipeline.errors import ProcessingError, SettingsError, ValidationError
from pipeline.fingerprint import id_fingerprint
from pipeline.serde import SingleObjectSerde
from pipeline.settings import load_settings
from processors.sessions import (
    NO_WATERMARK,
    CloseRule,
    DeviceState,
    SessionEvent,
    SessionPolicy,
    WakeupSchedule,
    add_event,
    advance,
    flush,
    next_wakeup,
    sessionize_batch,
    to_ms,
)
from processors.sessions.events import VISIT_ID_CHARS_MAX, VISIT_IDS_MAX, keep_ids
from tests.processors.sessions.helpers import (
    MINUTE_MS,
    T0,
    WorkerSessionizer,
    ev,
    late_ids,
    policy,
    run,
    sessions,
)

START = to_ms(T0)


def test_visit_closes_exactly_when_the_watermark_reaches_its_boundary() -> None:
    pol = policy()
    state, outputs = add_event(None, ev("a", 0), START - pol.allowed_lateness_ms, pol)
    assert outputs == []  # waits for the watermark
    assert next_wakeup(state, pol) == START + 1
    state, outputs = advance(state, START + 1, pol)
    assert [type(o).__name__ for o in outputs] == ["Assignment"]
    boundary = START + pol.gap_ms + 1  # one millisecond past the gap: no event can join any more
    assert next_wakeup(state, pol) == boundary
    state, outputs = advance(state, boundary - 1, pol)
    assert outputs == []
    state, outputs = advance(state, boundary, pol)
    assert [(s.closed_by, s.event_count) for s in sessions(outputs)] == [(CloseRule.INACTIVITY, 1)]
    assert state.is_idle and next_wakeup(state, pol) is None


def test_flush_closes_as_idle_sweep_and_later_stragglers_are_late() -> None:
    pol = policy()
    sessionizer = WorkerSessionizer(pol)
    sessionizer.process_many([ev("a", 0), ev("b", 2)])
    closed = sessions(sessionizer.flush())
    assert [(s.closed_by, s.event_count) for s in closed] == [(CloseRule.IDLE_SWEEP, 2)]
    # The partition watermark is still low, but the device's visit is published: 1 min is late now.
    outputs = sessionizer.process(ev("straggler", 1)) + sessionizer.process(ev("next", 3))
    assert late_ids(outputs) == ["straggler"]
    assert [s.first_event_id for s in sessions(sessionizer.flush())] == ["next"]


def test_visit_aggregates() -> None:
    events = [
        ev("v1", 0, customer_id="c-7", is_page_view=True, page="/", referrer_class="search",
           referrer_host="www.google.com", browser_family="Firefox", os_family="Linux",
           device_class="desktop", channel="web", utm_source="g", utm_medium="cpc", utm_campaign="s"),
        ev("v2", 10, is_page_view=True, page="/shoes"),  # a page call carries no products
        ev("v3", 11, event_name="Product Added", products_added=("p2",)),
        ev("v4", 12, event_name="Product Viewed", products_viewed=("p1", "p2", "p3", "p2")),
        ev("v5", 13, event_name="Order Completed", products_bought=("p2",), revenue=19.5),
        ev("v6", 14, event_name="Order Completed", products_bought=("p9",), revenue=0.5),
        ev("v7", 15, is_page_view=True, page=None),
        ev("w1", 60, is_page_view=True, page="/again"),  # a second visit: a bounce
    ]  # fmt: skip
    first, second = sessions(run(events, policy(gap_ms=30 * MINUTE_MS)))
    assert (first.event_count, first.page_view_count) == (7, 3)
    assert (first.landing_page, first.exit_page) == ("/", "/shoes")
    assert (first.referrer_class, first.referrer_host) == ("search", "www.google.com")
    assert (first.utm_source, first.utm_medium, first.utm_campaign) == ("g", "cpc", "s")
    assert (first.channel, first.device_class, first.browser_family, first.os_family) == (
        "web", "desktop", "Firefox", "Linux"
    )  # fmt: skip
    assert first.products_viewed == ("p1", "p2", "p3")
    assert first.products_added == ("p2",)
    assert first.products_bought == ("p2", "p9")
    assert (first.revenue, first.converted, first.bounce) == (20.0, True, False)
    assert (first.first_event_id, first.last_event_id, first.duration_ms) == ("v1", "v7", 15 * MINUTE_MS)
    assert first.closed_by is CloseRule.INACTIVITY
    # The device's customer is still known in its next visit, which is a single page view.
    assert (second.customer_id, second.bounce, second.converted, second.revenue) == ("c-7", True, False, 0.0)


def test_a_retried_order_counts_once_in_the_visit_revenue() -> None:
    """Issue 10 item 4: a client retry of Order Completed (same order id, fresh message id)."""
    events = [
        ev("o1", 0, event_name="Order Completed", order_id="A-1", products_bought=("p1",), revenue=30.0),
        ev("o1-bis", 1, event_name="Order Completed", order_id="A-1", products_bought=("p1",), revenue=30.0),
        ev("o2", 2, event_name="Order Completed", order_id="A-2", revenue=5.0),
        ev("o3", 3, event_name="Order Completed", revenue=1.0),  # no order id: nothing to dedupe by
    ]  # fmt: skip
    (visit,) = sessions(run(events, policy()))
    assert (visit.revenue, visit.event_count, visit.converted) == (36.0, 4, True)


def test_order_ids_survive_a_restart_mid_visit() -> None:
    pol = policy()
    state, _ = add_event(None, ev("o1", 0, event_name="Order Completed", order_id="A-1", revenue=30.0),
                         NO_WATERMARK, pol)  # fmt: skip
    state, _ = advance(state, START + MINUTE_MS, pol)  # released: the order is in the open visit
    state = DeviceState.from_bytes(state.to_bytes())
    retry = ev("o1-retry", 2, event_name="Order Completed", order_id="A-1", revenue=30.0)
    state, _ = add_event(state, retry, START + MINUTE_MS, pol)
    state, outputs = flush(state, pol)
    (visit,) = sessions(outputs)
    assert visit.revenue == 30.0
    assert DeviceState.from_bytes(state.to_bytes()).buffer == []


def test_session_record_matches_the_avro_contract() -> None:
    session = sessions(run([ev("a", 0, is_page_view=True, page="/", products_viewed=("p1",))], policy()))[0]
    serde = SingleObjectSerde("session")
    decoded = serde.decode(serde.encode(session.to_record()))
    assert decoded == session.to_record()
    assert decoded["closed_by"] == "idle_sweep" and decoded["merged_session_ids"] == []


def test_an_event_of_another_device_is_refused() -> None:
    state, _ = add_event(None, ev("a", 0), START, policy())
    with pytest.raises(ProcessingError):
        add_event(state, ev("b", 1, device="other"), START, policy())


def test_flush_of_a_state_that_waits_for_nothing_outputs_nothing() -> None:
    assert flush(DeviceState("d1"), policy())[1] == []


def test_wakeup_schedule_pops_due_devices_once_in_order() -> None:
    schedule = WakeupSchedule()
    schedule.set("a", 30)
    schedule.set("b", 10)
    schedule.set("a", 20)  # moved earlier: the entry at 30 is stale
    schedule.set("c", None)
    assert schedule.pop_due(15) == ["b"]
    assert schedule.pop_due(40) == ["a"]
    assert schedule.pop_due(100) == [] and len(schedule) == 0


def test_restarted_partition_rebuilds_its_schedule_from_the_states() -> None:
    pol = policy()
    first = WorkerSessionizer(pol)
    first.process_many([ev("a", 0), ev("x", 1, device="d2"), ev("b", 2)])
    second = first.restarted()  # a new stage, its state read back from the changelogs
    outputs = second.process(ev("c", 20))  # moves the watermark past both visits
    assert sorted(s.anonymous_id for s in sessions(outputs)) == ["d1", "d2"]


def test_policy_from_settings_and_describe() -> None:
    settings = load_settings(
        worker={
            "session": {"inactivity_gap_s": 900, "split_at_midnight": True, "midnight_timezone": "Asia/Seoul"}
        }
    )
    pol = SessionPolicy.from_settings(settings.worker.session)
    assert (pol.gap_ms, pol.max_duration_ms, pol.allowed_lateness_ms) == (900_000, 86_400_000, 300_000)
    text = pol.describe()
    assert "15 min" in text and "24 h" in text and "Asia/Seoul" in text
    with pytest.raises(SettingsError):
        load_settings(worker={"session": {"midnight_timezone": "Mars/Olympus"}})
    with pytest.raises(SettingsError):
        SessionPolicy(timezone="Mars/Olympus")


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        SessionEvent("a", "d1", datetime(2026, 11, 2, 9, 0))


def test_package_docstring_lists_the_whole_public_api() -> None:
    doc = processors.sessions.__doc__ or ""
    missing = [name for name in processors.sessions.__all__ if name not in doc]
    assert missing == []


def test_dedup_memory_bounds_what_a_device_remembers() -> None:
    pol = policy(dedup_memory=1)
    sessionizer = WorkerSessionizer(pol)
    sessionizer.process_many([ev("a", 0), ev("b", 10), ev("c", 11)])  # "a" released, "b", "c" wait
    assert list(sessionizer.states["d1"].recent_seen) == [id_fingerprint("c")]
    again = sessionizer.process(ev("b", 10)) + sessionizer.process(ev("a", 0))
    # "b" still waits in the buffer: a duplicate; "a" is forgotten and behind the watermark: late.
    assert [type(o).__name__ for o in again] == ["DuplicateEvent", "LateEvent"]


def test_a_visit_lists_its_first_thousand_products_and_no_overlong_id_as_the_reference_does() -> None:
    pol = policy()
    overlong = "x" * (VISIT_ID_CHARS_MAX + 1)
    events = [
        ev(
            f"e{n}",
            n,
            event_name="Product Viewed",
            products_viewed=(overlong, *(f"p{n}-{i}" for i in range(300))),
        )
        for n in range(5)
    ]
    [visit] = sessions(run(events, pol))
    assert visit.products_viewed == tuple(f"p{n}-{i}" for n in range(5) for i in range(300))[:VISIT_IDS_MAX]
    [batch_visit] = sessionize_batch(events, pol).sessions
    assert batch_visit == visit


def test_keep_ids_adds_in_order_each_once_within_its_bounds() -> None:
    kept: dict[str, None] = {"a": None}
    keep_ids(kept, ["b", "a", "x" * (VISIT_ID_CHARS_MAX + 1), "c"])
    assert list(kept) == ["a", "b", "c"]
    keep_ids(kept, (f"n{i}" for i in range(2 * VISIT_IDS_MAX)))
    assert len(kept) == VISIT_IDS_MAX and list(kept)[:4] == ["a", "b", "c", "n0"]
