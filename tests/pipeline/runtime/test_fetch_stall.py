"""A stage whose consumer stopped fetching is a stall; a stage idle at the end of its input is not.

Seen in CI: the trigger stages run apart, and the evaluate stage sat alive and silent with 48
committed records unread for three minutes; it had no records in hand, so its watchdog saw no
work. Fetches that stop are simulated here by pausing the consumer's partitions (alive, assigned,
fetching nothing). The input is written in transactions, some aborted, so the partitions end in
markers and aborted records a read-committed consumer steps over: an end that moved by those
alone is no work either.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from pipeline.ends import ReadToEnd
from pipeline.health import Health
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.messages import Incoming
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import RunnerView, Step, Stores

pytestmark = [pytest.mark.kafka]
STALL_AFTER_S = 4.0


class Reading:
    """Counts what it reads; told to, stops its consumer's fetches (from the runner's thread: a
    pause from another thread can wait on the consumer's queue)."""

    name = "reading"
    store_names: tuple[str, ...] = ()
    tick_interval_s = 0.2

    def __init__(self, topic: str) -> None:
        self.inputs: tuple[str, ...] = (topic,)
        self.read = 0
        self.stop_fetching = threading.Event()
        self.paused = threading.Event()

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        return None

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        self.read += len(batch)
        return Step()

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        if self.stop_fetching.is_set() and not self.paused.is_set():
            assert isinstance(view, KafkaRunner)
            view.consumer.pause(view.consumer.assignment())  # alive, assigned, fetching nothing
            self.paused.set()
        return Step()


def _send(bootstrap: str, topic: str, count: int, abort_after: int = 0) -> None:
    """``count`` records committed, then ``abort_after`` more in a transaction that is aborted."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": uuid.uuid4().hex})
    producer.init_transactions(30)
    for n, finish in ((count, producer.commit_transaction), (abort_after, producer.abort_transaction)):
        if n:
            producer.begin_transaction()
            for i in range(n):
                producer.produce(topic, key=b"k%d" % i, value=b"x", partition=i % 2)
            finish(30)


def _until(what: str, done: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within_s:.0f}s")
        time.sleep(0.2)


def test_fetches_that_stopped_are_a_stall_and_an_idle_end_is_not(kafka_bootstrap: str) -> None:
    topic = f"fetch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    _send(kafka_bootstrap, topic, 40, abort_after=3)
    stage = Reading(topic)
    config = RunnerConfig(kafka_bootstrap, f"g-{topic}", {}, batch_within_s=0.1, instance_id="0")
    health = Health(stage.name, STALL_AFTER_S)
    runner = KafkaRunner(stage, config, RuntimeMetrics(CollectorRegistry()), health)
    runner.at_end = ReadToEnd(AdminClient({"bootstrap.servers": kafka_bootstrap}), every_s=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _until("read", lambda: stage.read == 40, 60)
        time.sleep(2 * STALL_AFTER_S)  # read to the end: idle, past the bound twice over
        assert health.stall() is None
        _send(kafka_bootstrap, topic, 0, abort_after=5)  # the end moves by records never to be read
        time.sleep(2 * STALL_AFTER_S)
        assert health.stall() is None

        stage.stop_fetching.set()
        _until("paused", stage.paused.is_set, 10)
        _send(kafka_bootstrap, topic, 6)
        _until("a stall", lambda: health.stall() is not None, 4 * STALL_AFTER_S)
        assert "while there is work" in str(health.stall())
        assert stage.read == 40
    finally:
        stop.set()
        thread.join(30)
