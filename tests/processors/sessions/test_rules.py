"""Each session rule on a small, readable example (policy in minutes: gap 5, lateness 5, max 60)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from processors.sessions import (
    Assignment,
    CloseRule,
    DuplicateEvent,
    LateEvent,
    SessionEvent,
    session_id_for,
    to_ms,
)
from tests.processors.sessions.helpers import (
    MINUTE_MS,
    T0,
    WorkerSessionizer,
    assignments,
    ev,
    late_ids,
    policy,
    run,
    sessions,
)


def spans(outputs: list) -> list[tuple[list[str], CloseRule]]:
    """Each closed visit as (event ids in order, closing rule), by start."""
    by_session: dict[str, list[str]] = {}
    for out in outputs:
        if isinstance(out, Assignment):
            by_session.setdefault(out.session_id, []).append(out.event_id)
    return [(by_session[s.session_id], s.closed_by) for s in sessions(outputs)]


def test_inactivity_gap_cuts_and_a_gap_of_exactly_the_limit_does_not() -> None:
    outputs = run([ev("a", 0), ev("b", 5), ev("c", 10.001), ev("d", 30)], policy())
    assert spans(outputs) == [
        (["a", "b"], CloseRule.INACTIVITY),
        (["c"], CloseRule.INACTIVITY),
        (["d"], CloseRule.IDLE_SWEEP),
    ]


def test_late_event_bridging_two_visits_merges_them_as_kafka_streams_does() -> None:
    # Gap 5: 10, 12, 20 are two visits; 16 arriving last joins them into one, 10 to 20.
    without = run([ev("a", 10), ev("b", 12), ev("c", 20)], policy())
    assert spans(without) == [(["a", "b"], CloseRule.INACTIVITY), (["c"], CloseRule.IDLE_SWEEP)]

    sessionizer = WorkerSessionizer(policy())
    before = sessionizer.process_many([ev("a", 10), ev("b", 12), ev("c", 20)])
    after = sessionizer.process(ev("late", 16)) + sessionizer.flush()
    merged = sessions(after)
    assert [(s.start, s.end, s.event_count) for s in merged] == [
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=20), 4)
    ]
    # Nothing published before the bridging event named a visit (events go on without one):
    # all four events are found in the merged visit, nothing to retract.
    assert assignments(before) == {}
    assert assignments(before + after) == dict.fromkeys(["a", "b", "c", "late"], merged[0].session_id)
    assert sessions(before) == []
    assert merged[0].merged_session_ids == ()


def test_max_duration_splits_a_busy_visit() -> None:
    pol = policy(max_duration_ms=15 * MINUTE_MS)
    outputs = run([ev(f"e{m:02d}", m) for m in range(0, 24, 4)], pol)
    assert spans(outputs) == [
        (["e00", "e04", "e08", "e12"], CloseRule.MAX_DURATION),
        (["e16", "e20"], CloseRule.IDLE_SWEEP),
    ]
    assert all(s.duration_ms < pol.max_duration_ms for s in sessions(outputs))


def test_midnight_split_uses_the_local_date_of_the_configured_zone() -> None:
    # 22:50 and 23:05 UTC on 2 November are 23:50 and 00:05 in Berlin (CET).
    first = SessionEvent("a", "d1", datetime(2026, 11, 2, 22, 50, tzinfo=UTC))
    second = SessionEvent("b", "d1", datetime(2026, 11, 2, 23, 5, tzinfo=UTC))
    gap = policy(gap_ms=30 * MINUTE_MS)
    berlin = policy(gap_ms=30 * MINUTE_MS, split_at_midnight=True, timezone="Europe/Berlin")
    utc = policy(gap_ms=30 * MINUTE_MS, split_at_midnight=True, timezone="UTC")
    assert spans(run([first, second], berlin)) == [(["a"], CloseRule.MIDNIGHT), (["b"], CloseRule.IDLE_SWEEP)]
    assert spans(run([first, second], utc)) == [(["a", "b"], CloseRule.IDLE_SWEEP)]
    assert spans(run([first, second], gap)) == [(["a", "b"], CloseRule.IDLE_SWEEP)]


def test_midnight_split_where_dst_skips_midnight() -> None:
    # Havana jumps from 23:59:59 on 7 March 2026 to 01:00 on 8 March (05:00 UTC).
    pol = policy(gap_ms=30 * MINUTE_MS, split_at_midnight=True, timezone="America/Havana")
    before = SessionEvent("a", "d1", datetime(2026, 3, 8, 4, 55, tzinfo=UTC))
    after = SessionEvent("b", "d1", datetime(2026, 3, 8, 5, 5, tzinfo=UTC))
    assert pol.next_midnight_ms(before.time_ms) == to_ms(datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    assert spans(run([before, after], pol)) == [(["a"], CloseRule.MIDNIGHT), (["b"], CloseRule.IDLE_SWEEP)]


def test_campaign_change_starts_a_visit_but_direct_traffic_does_not() -> None:
    spring = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring"}
    news = {"utm_source": "news", "utm_medium": "email", "utm_campaign": "n42"}
    events = [
        ev("a", 0, is_page_view=True, page="/", **spring),
        ev("b", 1, is_page_view=True, page="/shoes"),  # direct / internal: the visit goes on
        ev("c", 2, is_page_view=True, page="/", **spring),  # same campaign again: goes on
        ev("d", 3, is_page_view=True, page="/news", **news),  # another campaign: new visit
    ]
    outputs = run(events, policy())
    assert spans(outputs) == [(["a", "b", "c"], CloseRule.CAMPAIGN_CHANGE), (["d"], CloseRule.IDLE_SWEEP)]
    assert [s.utm_campaign for s in sessions(outputs)] == ["spring", "n42"]

    direct_first = run([ev("a", 0), ev("b", 1, **spring)], policy())
    assert spans(direct_first) == [(["a"], CloseRule.CAMPAIGN_CHANGE), (["b"], CloseRule.IDLE_SWEEP)]

    off = run(events, policy(split_on_campaign_change=False))
    assert spans(off) == [(["a", "b", "c", "d"], CloseRule.IDLE_SWEEP)]
    assert sessions(off)[0].utm_campaign == "spring"  # the visit's first campaign


def test_event_behind_the_watermark_is_reported_late_and_left_out() -> None:
    sessionizer = WorkerSessionizer(policy())
    outputs = sessionizer.process_many([ev("a", 0), ev("b", 20), ev("late", 14.99), ev("edge", 15)])
    assert late_ids(outputs) == ["late"]
    late = cast(LateEvent, outputs[[type(o).__name__ for o in outputs].index("LateEvent")])
    assert late.watermark_ms == to_ms(T0) + 15 * MINUTE_MS
    outputs += sessionizer.flush()
    assert "late" not in assignments(outputs)
    assert "edge" in assignments(outputs)  # exactly at the watermark is still in time


def test_redelivered_events_change_nothing() -> None:
    events = [ev("a", 0), ev("b", 3), ev("c", 30), ev("d", 31)]
    clean = run(events, policy())
    # "b" again while it waits in the buffer, "a" again after its release, "c" again at the end.
    redelivered = [events[0], events[1], events[1], events[2], events[0], events[3], events[2]]
    noisy = run(redelivered, policy())
    duplicates = [
        cast(DuplicateEvent, out).event_id for out in noisy if type(out).__name__ == "DuplicateEvent"
    ]
    assert duplicates == ["b", "a", "c"]
    assert [o for o in noisy if type(o).__name__ != "DuplicateEvent"] == clean


def test_session_ids_are_deterministic_whatever_the_arrival_order() -> None:
    events = [ev("a", 0), ev("b", 2), ev("c", 3), ev("x", 1, device="d2")]
    in_order = run(events, policy())
    shuffled = run([events[2], events[3], events[0], events[1]], policy())
    assert sessions(in_order) == sorted(sessions(shuffled), key=lambda s: s.anonymous_id)
    assert assignments(in_order) == assignments(shuffled)
    assert sessions(in_order)[0].session_id == session_id_for("d1", to_ms(T0), "a")
    assert session_id_for("d1", to_ms(T0), "a") != session_id_for("d2", to_ms(T0), "a")


def test_same_millisecond_events_are_ordered_by_id() -> None:
    outputs = run([ev("b", 0), ev("a", 0), ev("c", 1)], policy())
    assert spans(outputs) == [(["a", "b", "c"], CloseRule.IDLE_SWEEP)]
    assert sessions(outputs)[0].first_event_id == "a"


def test_tie_between_time_boundaries_is_named_inactivity() -> None:
    # Max 10 min and gap 5: after events at 0 and 4.999..., both boundaries fall at 10 min.
    pol = policy(max_duration_ms=10 * MINUTE_MS)
    outputs = run([ev("a", 0), SessionEvent("b", "d1", T0 + timedelta(milliseconds=5 * MINUTE_MS - 1)),
                   ev("c", 10)], pol)  # fmt: skip
    assert spans(outputs)[0] == (["a", "b"], CloseRule.INACTIVITY)


def test_event_exactly_at_the_watermark_still_takes_its_place() -> None:
    # After y (minute 10) the watermark is minute 5: x is released, b and c at minute 5 must wait,
    # since a at minute 5 may still come and sorts before them.
    sessionizer = WorkerSessionizer(policy())
    outputs = sessionizer.process_many([ev("x", 4), ev("b", 5), ev("c", 5), ev("y", 10)])
    assert [e.event_id for e in sessionizer.states["d1"].buffer] == ["b", "c", "y"]
    assert assignments(outputs) == {}  # no visit closed yet
    outputs += sessionizer.process(ev("a", 5)) + sessionizer.flush()
    assert list(assignments(outputs)) == ["x", "a", "b", "c", "y"]
