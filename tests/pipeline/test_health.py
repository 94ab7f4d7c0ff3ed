"""The liveness base: stalls are "no progress while there is work", endpoints say so."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from pipeline.health import EXIT_STALLED, Health, StallExit, Watchdog, health_routes
from tests.liveness import ManualClock


def test_work_without_progress_past_the_bound_is_a_stall() -> None:
    clock = ManualClock(100.0)
    health = Health("sink", stall_after_s=30, clock=clock)
    health.beat(has_work=True)
    clock.now += 29
    health.beat(has_work=True)
    assert health.stall() is None
    clock.now += 1
    health.beat(has_work=True)
    assert health.stall() == "sink: no progress for 30s while there is work"


def test_progress_or_no_work_is_not_a_stall() -> None:
    clock = ManualClock(100.0)
    health = Health("sink", stall_after_s=30, clock=clock)
    for _ in range(10):  # busy and moving
        clock.now += 10
        health.progressed()
        health.beat(has_work=True)
    assert health.stall() is None
    for _ in range(10):  # idle: nothing to do is not a stall
        clock.now += 10
        health.beat(has_work=False)
    assert health.stall() is None


def test_work_counts_from_when_it_appeared_not_from_the_last_progress() -> None:
    clock = ManualClock(100.0)
    health = Health("sink", stall_after_s=30, clock=clock)
    clock.now += 1000  # long idle, no progress
    health.beat(has_work=True)
    assert health.stall() is None


def test_a_loop_that_does_not_come_round_is_a_stall() -> None:
    clock = ManualClock(100.0)
    health = Health("sink", stall_after_s=30, clock=clock)
    health.beat(has_work=False)
    clock.now += 31  # stuck in a flush: no beat at all
    assert health.stall() == "sink: the loop has not come round for 31s"


def test_a_commit_not_back_within_its_bound_is_a_stall_long_before_the_loop_bound() -> None:
    clock = ManualClock(100.0)
    health = Health("worker", stall_after_s=120, clock=clock, call_within_s=30)
    health.beat(has_work=True)
    with health.within("the transaction commit"):
        clock.now += 29
        assert health.stall() is None
        clock.now += 2
        assert health.stall() == "worker: the transaction commit has not returned for 31s"
    assert health.stall() is None  # it returned: the loop's own bound again
    with health.within("the transaction commit"):
        clock.now += 5  # a commit that returns in time is no stall, however often
    assert health.stall() is None


def test_a_stall_logs_where_every_thread_is(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(100.0)
    health = Health("worker", stall_after_s=5, clock=clock)
    stuck, release = threading.Event(), threading.Event()

    def the_stuck_loop() -> None:
        stuck.set()
        release.wait(5)

    thread = threading.Thread(target=the_stuck_loop, name="stage-worker")
    thread.start()
    stuck.wait(5)
    try:
        clock.now += 6
        with caplog.at_level(logging.ERROR, logger="pipeline.health"):
            assert Watchdog(health, lambda reason: None).check()
    finally:
        release.set()
        thread.join()
    logged = caplog.records[-1].getMessage()
    assert logged.startswith("worker: the loop has not come round for 6s; exiting")
    assert "thread stage-worker:" in logged and "in the_stuck_loop" in logged


def test_the_watchdog_acts_once_and_stops_the_loop() -> None:
    clock = ManualClock(100.0)
    health = Health("sink", stall_after_s=5, clock=clock)
    stop = threading.Event()
    exits: list[int] = []
    watchdog = Watchdog(health, StallExit(stop, grace_s=0.05, exit=exits.append))
    assert not watchdog.check()
    clock.now += 6
    assert watchdog.check()
    assert stop.is_set() and health.stalled is not None
    threading.Event().wait(0.3)
    assert exits == [EXIT_STALLED]  # the loop did not end within the grace: the process exits


def _get(app: Any, path: str) -> tuple[str, dict[str, Any]]:
    got: list[str] = []
    body = b"".join(app({"PATH_INFO": path}, lambda status, headers: got.append(status)))
    return got[0], json.loads(body) if body.startswith(b"{") else {"raw": body.decode()}


def test_health_endpoints() -> None:
    clock = ManualClock(100.0)
    health = Health("sink", stall_after_s=5, clock=clock)

    def metrics(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"metrics"]

    app = health_routes(health, metrics)
    assert _get(app, "/metrics") == ("200 OK", {"raw": "metrics"})
    assert _get(app, "/health")[0] == "200 OK"
    status, body = _get(app, "/health/ready")
    assert status.startswith("503") and body["detail"] == "starting"
    health.set_ready(True)
    assert _get(app, "/health/ready")[0] == "200 OK"
    health.beat(has_work=True)
    clock.now += 6
    status, body = _get(app, "/health")
    assert status.startswith("503") and body["status"] == "stalled"
    assert _get(app, "/health/ready")[0].startswith("503")
