"""A head stage stops reading while the stages after it are too far behind, and goes on after.

``DownstreamBacklog`` alone against a fake admin client (no broker), then a ``KafkaRunner`` on a
real broker: it copies ``in`` to ``mid`` until the group reading ``mid`` has more than the bound
unread, reads nothing while that lasts (and is no stall for its watchdog), and copies the rest,
each record once, when that group catches up.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from prometheus_client import CollectorRegistry

from pipeline.health import Health
from pipeline.runtime.backlog import DownstreamBacklog
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from tests.liveness import ManualClock, wait_for
from tests.pipeline.runtime.copy_stage import Copy


class FakeAdmin:
    """Ends and committed offsets of one group over ``t`` (2 partitions), answered when told."""

    def __init__(self) -> None:
        self.ends = {0: 0, 1: 0}
        self.committed = {0: -1001, 1: -1001}  # nothing committed yet
        self.pending: list[Callable[[], None]] = []
        self.asked = 0
        self.fail = False

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={"t": SimpleNamespace(partitions={0: None, 1: None})})

    def list_offsets(  # the parameters named as in ``BacklogAdmin``
        self, topic_partition_offsets: dict[TopicPartition, OffsetSpec], **_: Any
    ) -> dict[TopicPartition, Future[Any]]:
        self.asked += 1
        futures = {tp: Future[Any]() for tp in topic_partition_offsets}
        for tp, future in futures.items():

            def settle(f: Future[Any] = future, p: int = tp.partition) -> None:
                self._settle(f, SimpleNamespace(offset=self.ends[p]))

            self.pending.append(settle)
        return futures

    def list_consumer_group_offsets(
        self, list_consumer_group_offsets_request: list[ConsumerGroupTopicPartitions], **_: Any
    ) -> dict[str, Future[Any]]:
        [request] = list_consumer_group_offsets_request
        future = Future[Any]()
        assert request.topic_partitions is not None  # DownstreamBacklog names them
        tps = [
            TopicPartition(tp.topic, tp.partition, self.committed[tp.partition])
            for tp in request.topic_partitions
        ]
        self.pending.append(lambda: self._settle(future, SimpleNamespace(topic_partitions=tps)))
        return {request.group_id: future}

    def _settle(self, future: Future[Any], value: Any) -> None:
        if self.fail:
            future.set_exception(KafkaException("no answer"))
        else:
            future.set_result(value)

    def answer(self) -> None:
        pending, self.pending = self.pending, []
        for settle in pending:
            settle()


def test_over_the_bound_only_once_an_answer_says_so() -> None:
    admin, clock = FakeAdmin(), ManualClock()
    backlog = DownstreamBacklog(admin, {"down": ("t",)}, limit=100, every_s=1.0, clock=clock)
    admin.ends = {0: 80, 1: 21}
    assert not backlog.over()  # asked, not answered: unknown, read on
    assert admin.asked == 1
    admin.answer()
    assert backlog.over() and backlog.unread == 101  # nothing committed: all of it unread
    assert admin.asked == 1  # not due again yet

    admin.committed = {0: 80, 1: 20}
    clock.now = 1.0
    assert backlog.over()  # asked again; the last answer holds meanwhile
    admin.answer()
    assert not backlog.over() and backlog.unread == 0  # 1: read up to its transaction marker


def test_a_group_read_up_to_its_markers_has_nothing_unread() -> None:
    """Each transaction ends in a marker the group cannot read: a caught-up group commits one
    offset short of each end. Counted as records, those markers held a worker with a bound of a
    few records back for good once the triggers had caught up (found by
    tests/processors/test_worker_bound_apart.py with a bound of 5)."""
    admin, clock = FakeAdmin(), ManualClock()
    backlog = DownstreamBacklog(admin, {"down": ("t",)}, limit=0, every_s=1.0, clock=clock)
    admin.ends, admin.committed = {0: 250, 1: 31}, {0: 249, 1: 30}
    backlog.over()
    admin.answer()
    assert not backlog.over() and backlog.unread == 0
    admin.ends = {0: 252, 1: 31}  # a transaction of one record and its marker
    clock.now = 1.0
    backlog.over()
    admin.answer()
    assert backlog.over() and backlog.unread == 2  # the marker it stands at counts: one per transaction


def test_a_group_that_never_committed_is_named_when_the_head_holds_back() -> None:
    """A trigger process that has not started (or has never committed) holds the worker at the
    bound: the log line says which group, so an operator sees why the worker waits."""
    admin, clock = FakeAdmin(), ManualClock()
    backlog = DownstreamBacklog(admin, {"down": ("t",)}, limit=100, every_s=1.0, clock=clock)
    admin.ends = {0: 80, 1: 22}
    backlog.over()
    admin.answer()
    assert backlog.over() and backlog.never_committed == {"down"}
    assert backlog.describe() == (
        "102 records unread downstream (bound 100: down 102); never committed: down (is that stage running?)"
    )
    admin.committed = {0: -1001, 1: 0}  # one partition committed: the group has run (80 + 21 unread)
    clock.now = 1.0
    backlog.over()
    admin.answer()
    assert backlog.over() and backlog.never_committed == set()
    assert backlog.describe() == "101 records unread downstream (bound 100: down 101)"


def test_at_the_bound_is_not_over_it_and_an_error_is_unknown() -> None:
    admin, clock = FakeAdmin(), ManualClock()
    backlog = DownstreamBacklog(admin, {"down": ("t",)}, limit=100, every_s=1.0, clock=clock)
    admin.ends, admin.committed = {0: 151, 1: 51}, {0: 100, 1: 0}  # 50 records and a marker each
    backlog.over()
    admin.answer()
    assert not backlog.over() and backlog.unread == 100

    admin.ends = {0: 500, 1: 500}
    admin.fail = True
    clock.now = 1.0
    backlog.over()
    admin.answer()
    assert not backlog.over() and backlog.unread is None  # a broker that does not answer stops nothing


def test_closing_waits_for_the_answers_still_out() -> None:
    """An answer must not reach an admin client that is already garbage (``pipeline.ends.settle``)."""
    admin = FakeAdmin()
    backlog = DownstreamBacklog(admin, {"down": ("t",)}, limit=100)
    backlog.over()
    futures = [*backlog._ends.values(), *backlog._committed.values()]
    answering = threading.Timer(0.2, admin.answer)
    answering.start()
    backlog.close()
    assert futures and all(future.done() for future in futures)
    answering.join()


def _committed_count(bootstrap: str, topic: str) -> int:
    """Records of ``topic`` a read-committed reader sees."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    count, ends = 0, 0
    while ends < 2:
        for m in consumer.consume(500, 1.0):
            if m.error() is None:
                count += 1
            else:
                ends += 1
    consumer.close()
    return count


def _catch_up(bootstrap: str, group: str, topic: str) -> None:
    """The downstream group commits the ends of ``topic``: nothing left unread."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    ends = [
        TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
        for p in (0, 1)
    ]
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


@pytest.mark.kafka
def test_the_head_stage_waits_for_the_stages_after_it(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, down = f"in-{run}", f"mid-{run}", f"down-{run}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, 2, 1) for t in (source, target)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(600):
        producer.produce(source, key=b"k%d" % i, value=b"v%d" % i, partition=i % 2)
    producer.flush(30)

    stage = Copy(source, target)
    config = RunnerConfig(kafka_bootstrap, f"copy-{run}", {}, batch_max_events=50, batch_within_s=0.1,
                          instance_id=run, downstream={down: (target,)}, downstream_max=100)  # fmt: skip
    health = Health(stage.name, 1.0)
    metrics = RuntimeMetrics(CollectorRegistry())
    runner = KafkaRunner(stage, config, metrics, health)
    assert runner.backlog is not None
    runner.backlog.every_s = 0.2
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for("held back", lambda: runner._held, 60)
        held_at = stage.read
        time.sleep(2.5)  # past the stall bound twice over, still held: nothing read, no stall
        assert runner._held and stage.read == held_at < 600
        assert health.stall() is None
        assert metrics.registry.get_sample_value("webhouse_stage_held_back", {"stage": "copy"}) == 1

        def downstream_reads() -> bool:  # the group after it catches up, again and again
            _catch_up(kafka_bootstrap, down, target)
            return stage.read == 600 and not runner._held

        wait_for("everything copied", downstream_reads, 60)
        assert metrics.registry.get_sample_value("webhouse_stage_held_back", {"stage": "copy"}) == 0
    finally:
        stop.set()
        thread.join(30)
    assert _committed_count(kafka_bootstrap, target) == 600  # each record once, none lost to the pause
