"""The sink's "read to the end" belief is checked against the broker: a partition whose end moved
while no record came is work waiting (fetches that stopped), one whose end stayed is not."""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from pipeline.ends import ReadToEnd
from pipeline.kafka_admin import ensure_topics
from pipeline.settings import KafkaSettings
from pipeline.topics import TopicSpec
from tests.liveness import ManualClock


class FakeLister:
    """The broker's read-committed ends, answered when the test says so."""

    def __init__(self, ends: dict[tuple[str, int], int]) -> None:
        self.ends = ends
        self.pending: list[tuple[TopicPartition, Future[Any]]] = []

    def list_offsets(  # the parameter named as in ``OffsetLister``
        self, topic_partition_offsets: dict[TopicPartition, OffsetSpec], **_: Any
    ) -> dict[TopicPartition, Future[Any]]:
        asked = {tp: Future[Any]() for tp in topic_partition_offsets}
        self.pending += list(asked.items())
        return asked

    def answer(self) -> None:
        for tp, future in self.pending:
            future.set_result(SimpleNamespace(offset=self.ends[(tp.topic, tp.partition)]))
        self.pending = []


def test_an_end_that_moved_while_no_record_came_is_work() -> None:
    lister, clock = FakeLister({("t", 0): 10, ("t", 1): 7}), ManualClock()
    ends = ReadToEnd(lister, every_s=5, clock=clock)
    ends.reached(("t", 0), 10)
    ends.reached(("t", 1), 7)
    ends.probe()
    assert not lister.pending  # not due yet
    clock.now = 5
    ends.probe()
    assert len(lister.pending) == 2
    lister.ends[("t", 1)] = 9  # new committed records the consumer never fetched
    lister.answer()
    ends.probe()
    assert ("t", 0) in ends and ("t", 1) not in ends
    assert ends.behind == {("t", 1)}
    ends.left(("t", 1))  # a record came after all
    assert not ends.behind


def test_an_answer_about_a_partition_read_since_is_ignored() -> None:
    lister, clock = FakeLister({("t", 0): 12}), ManualClock()
    ends = ReadToEnd(lister, every_s=5, clock=clock)
    ends.reached(("t", 0), 10)
    clock.now = 5
    ends.probe()
    ends.left(("t", 0))
    ends.reached(("t", 0), 12)  # read on to the new end before the answer came
    lister.answer()
    ends.probe()
    assert ("t", 0) in ends and not ends.behind


@pytest.mark.kafka
def test_the_end_event_offset_is_the_read_committed_end(kafka_settings: KafkaSettings) -> None:
    """What the comparison rests on: after a committed transaction (its marker is the partition's
    last offset), the end-of-partition event and the broker's read-committed end agree."""
    bootstrap = kafka_settings.bootstrap_servers
    topic = f"ends-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [TopicSpec(topic, 1)])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, b"%d" % i, partition=0)
    producer.commit_transaction(30)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "isolation.level": "read_committed",
         "enable.partition.eof": True}
    )  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, 0)])
    end = None
    for _ in range(100):
        msg = consumer.poll(0.5)
        if (
            msg is not None
            and (error := msg.error()) is not None
            and error.code() == KafkaError._PARTITION_EOF
        ):
            end = msg.offset()
            break
    consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    ends = ReadToEnd(admin, every_s=0)
    ends.reached((topic, 0), int(end or 0))
    ends.probe()
    for future in ends._asked.values():
        future.result(30)
    ends.probe()
    assert end == 4  # three records and the commit marker
    assert (topic, 0) in ends and not ends.behind
