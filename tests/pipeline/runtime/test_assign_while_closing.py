"""A stage told to stop while a rebalance it has not yet served is queued: ``close`` serves the
assignment as the client's connections go. Restoring it then asked for committed offsets, failed
with ``_DESTROY`` ("Broker handle destroyed for termination") and ended the stage's thread with an
error (seen in CI on 5 December 2026, in ``test_zombie_tick``: the stale runner rejoined as the test
stopped). An assignment served while closing is now let go unrestored.

To queue the assignment: the new runner joins while the old one is stuck in a tick (the group waits
for the old one to rejoin), the new one gets stuck in its own first tick, and the old one then
rejoins, which completes the rebalance while the new one is not polling.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.liveness import wait_for
from tests.pipeline.runtime.running import RunnerThread, StuckTick, create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PARTITIONS = frozenset({0, 1, 2})
LONG_POLL = {"max.poll.interval.ms": 60_000}  # a tick stuck for seconds keeps its member


def test_an_assignment_served_while_closing_is_let_go(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"in-{run}", f"out-{run}", f"closing-{run}"
    create_topics(kafka_bootstrap, (source, target), len(PARTITIONS))
    old_stage, new_stage = StuckTick(source, target), StuckTick(source, target)
    old = RunnerThread(old_stage, kafka_bootstrap, group, "old", consumer=LONG_POLL)
    new = RunnerThread(new_stage, kafka_bootstrap, group, "new", consumer=LONG_POLL)
    try:
        old.start()
        wait_for("the old runner owning every partition", lambda: old.runner.owned == PARTITIONS, 60)
        old_stage.stall.set()
        wait_for("the old runner stuck in a tick", old_stage.stalled.is_set, 30)
        new_stage.stall.set()
        new.start()
        wait_for("the new runner stuck in its first tick", new_stage.stalled.is_set, 30)
        assert new.runner.owned == frozenset()
        time.sleep(2)  # the new runner's join waits for the old runner
        old_stage.resume.set()  # the old one rejoins: the rebalance ends, the new one's share queued
        time.sleep(3)
        new.close()  # served by close
        assert not new.thread.is_alive()
        assert new.errors == []
        assert new.runner.owned == frozenset()
        wait_for("the old runner owning every partition again", lambda: old.runner.owned == PARTITIONS, 60)
    finally:
        new.close()
        old.close()
    assert old.errors == []
