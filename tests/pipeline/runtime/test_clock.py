"""The stage clock: minimum over active sources, idle ones left out, explicit end, never backwards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.runtime.clock import END_MS, StageClock
from pipeline.runtime.control import (
    HEADER,
    Progress,
    SourceState,
    control_kind,
    end_headers,
    is_control,
    watermark_headers,
)

ACTIVE, IDLE, ENDED = SourceState.ACTIVE, SourceState.IDLE, SourceState.ENDED


def test_no_watermark_until_every_expected_source_reported() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    assert clock.report("a", Progress(ACTIVE, 1_000)) is None
    assert clock.report("b", Progress(ACTIVE, 500)) == 500


def test_the_slowest_active_source_holds_the_watermark() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    clock.report("a", Progress(ACTIVE, 10_000))
    clock.report("b", Progress(ACTIVE, 2_000))
    assert clock.report("a", Progress(ACTIVE, 50_000)) == 2_000  # the fast one does not decide


def test_idle_sources_hold_nothing_back_and_all_idle_holds() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    clock.report("a", Progress(ACTIVE, 10_000))
    clock.report("b", Progress(ACTIVE, 2_000))
    assert clock.report("b", Progress(IDLE, 2_000)) == 10_000
    assert clock.report("a", Progress(IDLE, 10_000)) == 10_000  # all idle: holds


def test_never_moves_backwards() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    clock.report("a", Progress(ACTIVE, 10_000))
    clock.report("b", Progress(IDLE, None))
    assert clock.watermark == 10_000
    assert clock.report("b", Progress(ACTIVE, 3_000)) == 10_000


def test_active_source_without_a_watermark_blocks() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    clock.report("a", Progress(ACTIVE, 10_000))
    assert clock.report("b", Progress(ACTIVE, None)) is None


def test_end_of_input_everywhere_closes_everything_then_a_new_epoch() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    clock.report("a", Progress(ENDED, 7_000))
    assert clock.report("b", Progress(ACTIVE, 3_000)) == 3_000
    assert clock.report("b", Progress(ENDED, 9_000)) == END_MS
    assert clock.event_time() == 9_000  # scheduled rules run at a real time, not at infinity
    assert clock.report("a", Progress(ACTIVE, 20_000)) == 20_000  # input resumed after the end


def test_an_end_without_a_time_keeps_the_time_the_source_reached() -> None:
    """After the end, scheduled rules run up to the latest real time; an end report without one
    (a source that never says its time at the end) must not make that time unknown."""
    clock = StageClock(frozenset({"a", "b"}))
    clock.report("a", Progress(ACTIVE, 7_000))
    clock.report("b", Progress(ACTIVE, 3_000))
    clock.report("a", Progress(ENDED, None))
    assert clock.report("b", Progress(ENDED, None)) == END_MS
    assert clock.event_time() == 7_000
    assert StageClock.from_bytes(clock.to_bytes(), {"a", "b"}).event_time() == 7_000


def test_round_trip() -> None:
    clock = StageClock(frozenset({"a"}))
    clock.report("a", Progress(ACTIVE, 42))
    again = StageClock.from_bytes(clock.to_bytes(), {"a"})
    assert again == clock


def test_control_headers() -> None:
    assert control_kind(None) is None and not is_control([("other", b"x")])
    assert control_kind(end_headers()) == b"end"
    assert control_kind(watermark_headers()) == b"watermark" and watermark_headers()[0][0] == HEADER
    assert Progress.from_bytes(Progress(IDLE, 5).to_bytes()) == Progress(IDLE, 5)


reports = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from([ACTIVE, IDLE]), st.integers(0, 10**9)),
    max_size=60,
)


@given(reports)
def test_monotonic_and_never_ahead_of_an_active_source(steps: list[tuple[str, SourceState, int]]) -> None:
    clock = StageClock(frozenset("abc"))
    last = None
    for source, state, ms in steps:
        mark = clock.report(source, Progress(state, ms))
        if last is not None:
            assert mark is not None and mark >= last
        if mark is not None and mark != last:  # it moved: no active source is behind it
            active = [p.ms for p in clock.progress.values() if p.state is ACTIVE]
            assert all(a is not None and a >= mark for a in active)
        last = mark


def test_sources_that_went_quiet_before_the_stage_heard_them_active_still_give_a_watermark() -> None:
    clock = StageClock(frozenset({"a", "b"}))
    assert clock.report("a", Progress(ACTIVE, 10_000)) is None  # b not heard yet
    clock.report("a", Progress(IDLE, 10_000))
    assert clock.report("b", Progress(IDLE, None)) == 10_000  # a's last watermark still holds
