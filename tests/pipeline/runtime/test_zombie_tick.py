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

import time
import uuid

import pytest
from confluent_kafka import Producer

from pipeline.runtime.stage import Record, Step
from tests.liveness import wait_for
from tests.pipeline.collector.kafka_read import read_topic
from tests.pipeline.runtime.copy_stage import Copy
from tests.pipeline.runtime.running import RunnerThread, StuckTick, create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
POLL_INTERVAL_S = 7.0  # librdkafka's max.poll.interval.ms: past it, the member leaves the group


def test_a_tick_after_the_partitions_moved_on_commits_nothing(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"in-{run}", f"out-{run}", f"zombie-{run}"
    create_topics(kafka_bootstrap, (source, target), 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(source, key=b"k", value=b"first", partition=0)
    producer.flush(30)

    poll = {"max.poll.interval.ms": int(POLL_INTERVAL_S * 1000)}
    zombie = StuckTick(source, target, after=Step([Record(target, b"zombie", b"tick", 0)]))
    new = Copy(source, target)
    old_thread = RunnerThread(zombie, kafka_bootstrap, group, "old", consumer=poll)
    new_thread = RunnerThread(new, kafka_bootstrap, group, "new", consumer=poll)
    old_thread.start()
    try:
        wait_for("the first record copied", lambda: zombie.read == 1, 60)
        zombie.stall.set()
        wait_for("the old runner stuck in its tick", zombie.stalled.is_set, 30)
        time.sleep(POLL_INTERVAL_S + 2)  # past the poll interval: the group lets the old member go
        new_thread.start()
        wait_for("the new runner owning the partition", lambda: new_thread.runner.owned == frozenset({0}), 60)
        zombie.resume.set()  # the zombie's tick returns its step and commits it, or is refused
        wait_for("the old runner's tick done", zombie.ticked.is_set, 30)
        producer.produce(source, key=b"k", value=b"second", partition=0)
        producer.flush(30)
        wait_for("the second record copied by the new runner", lambda: new.read == 1, 60)
    finally:
        old_thread.close()
        new_thread.close()
    copied = [m.value() for m in read_topic(kafka_bootstrap, target, 2)]
    assert copied == [b"first", b"second"]  # and no b"tick": read_topic would have got it by now
    assert old_thread.errors == [] and new_thread.errors == []
