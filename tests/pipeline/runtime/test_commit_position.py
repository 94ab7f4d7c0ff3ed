"""A stage that has read its input commits the end of it, past the transaction markers and an
aborted tail, on the real broker.

A read-committed consumer never gets a transaction's closing marker nor aborted records, so a
stage that committed the offset after its last record stood one marker short of each end for
ever, and before an aborted tail until a later record came: consumer-group lag never read 0, and
the bound of ``pipeline.runtime.backlog`` counted them. The runner commits the consumer's
position where it is further on (``KafkaRunner._offsets_after``).
"""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import Consumer, IsolationLevel, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from prometheus_client import CollectorRegistry

from pipeline.health import Health
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from tests.liveness import wait_for
from tests.pipeline.runtime.copy_stage import Copy

pytestmark = pytest.mark.kafka


def _write(bootstrap: str, topic: str) -> None:
    """Three committed transactions of 5 records (offsets 0-4, 6-10, 12-16, each followed by its
    marker), then one of 4 records aborted (18-21, its marker 22): the read-committed end is 23."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"w-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    for t in range(3):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, key=b"k", value=b"%d-%d" % (t, i), partition=0)
        producer.commit_transaction(30)
    producer.begin_transaction()
    for _ in range(4):
        producer.produce(topic, key=b"k", value=b"aborted", partition=0)
    producer.flush(30)
    producer.abort_transaction(30)


def _end(admin: AdminClient, topic: str) -> int:
    latest = {TopicPartition(topic, 0): OffsetSpec.latest()}
    [end] = admin.list_offsets(latest, isolation_level=IsolationLevel.READ_COMMITTED).values()
    return int(end.result().offset)


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def test_a_caught_up_stage_commits_the_end_of_its_input(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"in-{run}", f"out-{run}", f"copy-{run}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, target)]).values():
        future.result()
    _write(kafka_bootstrap, source)
    # The coordinator answers the abort once it is decided and writes the partition's marker
    # after that, so the read-committed end reaches 23 a moment after ``abort_transaction``.
    wait_for("the read-committed end at 23", lambda: _end(admin, source) == 23, 30)

    stage = Copy(source, target)
    config = RunnerConfig(
        kafka_bootstrap, group, {}, batch_max_events=50, batch_within_s=0.2, instance_id=run
    )
    runner = KafkaRunner(stage, config, RuntimeMetrics(CollectorRegistry()), Health(stage.name, 60.0))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for("the 15 committed records read", lambda: stage.read == 15, 60)
        # 17 would be the offset after the last record: the marker at 17 and the aborted tail left.
        wait_for(
            "the group committed at the end, 23", lambda: _committed(kafka_bootstrap, group, source) == 23, 30
        )
    finally:
        stop.set()
        thread.join(30)
    assert stage.read == 15
