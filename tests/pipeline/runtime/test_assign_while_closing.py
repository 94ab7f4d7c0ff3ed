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

import threading
import time
import uuid
from datetime import datetime

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from pipeline.health import Health
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import RunnerView, Step, Stores
from tests.liveness import wait_for
from tests.pipeline.runtime.copy_stage import Copy

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PARTITIONS = frozenset({0, 1, 2})


class TickStuckOnCue(Copy):
    """Copies its input; once ``stall`` is set, its next tick blocks until ``resume`` is set."""

    tick_interval_s = 0.2

    def __init__(self, source: str, target: str) -> None:
        super().__init__(source, target)
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.resume = threading.Event()

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        if self.stall.is_set() and not self.resume.is_set():
            self.stalled.set()
            self.resume.wait(120)
        return Step()


class Member:
    """A runner on its own thread; what ends its thread with an error is kept in ``errors``."""

    def __init__(self, stage: TickStuckOnCue, bootstrap: str, group: str, instance: str) -> None:
        config = RunnerConfig(
            bootstrap, group, {}, batch_within_s=0.2, session_timeout_s=6.0, instance_id=instance,
            extra_consumer={"max.poll.interval.ms": 60_000},
        )  # fmt: skip
        self.stage = stage
        metrics = RuntimeMetrics(CollectorRegistry())
        self.runner = KafkaRunner(stage, config, metrics, Health(stage.name, 600.0))
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run(self.stop)
        except BaseException as exc:
            self.errors.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.stage.resume.set()
        self.thread.join(60)


def test_an_assignment_served_while_closing_is_let_go(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"in-{run}", f"out-{run}", f"closing-{run}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, len(PARTITIONS), 1) for t in (source, target)]).values():
        future.result()
    old = Member(TickStuckOnCue(source, target), kafka_bootstrap, group, "old")
    new = Member(TickStuckOnCue(source, target), kafka_bootstrap, group, "new")
    try:
        old.thread.start()
        wait_for("the old runner owning every partition", lambda: old.runner.owned == PARTITIONS, 60)
        old.stage.stall.set()
        wait_for("the old runner stuck in a tick", old.stage.stalled.is_set, 30)
        new.stage.stall.set()
        new.thread.start()
        wait_for("the new runner stuck in its first tick", new.stage.stalled.is_set, 30)
        assert new.runner.owned == frozenset()
        time.sleep(2)  # the new runner's join waits for the old runner
        old.stage.resume.set()  # the old one rejoins: the rebalance ends, the new one's share queued
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
