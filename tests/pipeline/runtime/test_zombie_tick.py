"""A stage that lost its partitions without knowing it yet (stuck past the group's poll interval,
or its session expired while a broker was down) must not commit a tick's step: its outputs and
state writes belong to partitions another process may already have restored.

A tick reads no input, so its transaction used to carry no consumer offsets, and nothing told the
broker the stage was no longer a member: the tick committed. Seen in the cluster chaos test on
5 December 2026 (a device's waiting events released by the old owner after the new owner read its
devices, so the new owner closed the visit with 7 of its 18 events). Every transaction now commits
the owned partitions' offsets again (``KafkaRunner._with_fencing``), and the group coordinator
refuses them from a member it no longer has.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from pipeline.health import Health
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import Record, RunnerView, Step, Stores
from tests.liveness import wait_for
from tests.pipeline.collector.kafka_read import read_topic
from tests.pipeline.runtime.copy_stage import Copy

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
POLL_INTERVAL_S = 7.0  # librdkafka's max.poll.interval.ms: past it, the member leaves the group


class StallingTicker(Copy):
    """Copies its input; once ``stall`` is set, its next tick blocks until ``resume``, then returns
    one output: what a zombie would commit."""

    tick_interval_s = 0.2

    def __init__(self, source: str, target: str) -> None:
        super().__init__(source, target)
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self.ticked = threading.Event()

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        if not self.stall.is_set() or self.ticked.is_set():
            return Step()
        self.stalled.set()
        self.resume.wait(120)
        self.ticked.set()
        return Step([Record(self.target, b"zombie", b"tick", 0)])


def _runner(
    stage: Copy, bootstrap: str, group: str, instance: str, registry: CollectorRegistry
) -> KafkaRunner:
    config = RunnerConfig(
        bootstrap, group, {}, batch_within_s=0.2, session_timeout_s=6.0, instance_id=instance,
        extra_consumer={"max.poll.interval.ms": int(POLL_INTERVAL_S * 1000)},
    )  # fmt: skip
    return KafkaRunner(stage, config, RuntimeMetrics(registry), Health(stage.name, 600.0))


def test_a_tick_after_the_partitions_moved_on_commits_nothing(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"in-{run}", f"out-{run}", f"zombie-{run}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, target)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(source, key=b"k", value=b"first", partition=0)
    producer.flush(30)

    old_registry = CollectorRegistry()
    old = StallingTicker(source, target)
    old_runner = _runner(old, kafka_bootstrap, group, "old", old_registry)
    new = Copy(source, target)
    new_runner = _runner(new, kafka_bootstrap, group, "new", CollectorRegistry())
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in (old_runner, new_runner)]
    threads[0].start()
    try:
        wait_for("the first record copied", lambda: old.read == 1, 60)
        old.stall.set()
        wait_for("the old runner stuck in its tick", old.stalled.is_set, 30)
        time.sleep(POLL_INTERVAL_S + 2)  # past the poll interval: the group lets the old member go
        threads[1].start()
        wait_for("the new runner owning the partition", lambda: new_runner.owned == frozenset({0}), 60)
        old.resume.set()  # the zombie's tick returns its step and commits it, or is refused
        wait_for("the old runner's tick done", old.ticked.is_set, 30)
        producer.produce(source, key=b"k", value=b"second", partition=0)
        producer.flush(30)
        wait_for("the second record copied by the new runner", lambda: new.read == 1, 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    copied = [m.value() for m in read_topic(kafka_bootstrap, target, 2)]
    assert copied == [b"first", b"second"]  # and no b"tick": read_topic would have got it by now
