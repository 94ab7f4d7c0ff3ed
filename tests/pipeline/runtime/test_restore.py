"""A store restored from its changelog holds the previous owner's last committed batch, even when
that batch's commit markers are not written yet (a partition moved right after its commit).

A read-committed reader stops at the last stable offset; stopping there restored a state older
than the committed consumer offset, and the events that batch left waiting in state were lost
(the elastic-workers test saw one device's events vanish when a partition moved).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.runtime.kafka import read_changelog

pytestmark = [pytest.mark.kafka]


def test_the_restore_waits_for_a_transaction_still_open_on_the_changelog(kafka_bootstrap: str) -> None:
    topic = f"restore-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"device", value=b"first", partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"device", value=b"last batch", partition=0)
    producer.flush(30)  # written, not yet committed: the stable offset stays before it

    def commit_soon() -> None:
        time.sleep(2)
        producer.commit_transaction(30)

    committer = threading.Thread(target=commit_soon)
    committer.start()
    try:
        restored = dict((key, value) for _, key, value in read_changelog(kafka_bootstrap, topic, {0: 0}))
    finally:
        committer.join()
    assert restored == {b"device": b"last batch"}


def test_committed_offsets_wait_for_the_previous_owners_transaction(kafka_bootstrap: str) -> None:
    """KIP-447, as the runtime relies on it before a restore (``KafkaRunner._on_assign``): a
    read-committed consumer's ``committed()`` answers only once the transaction carrying the group's
    offsets is over, so the changelog ends read after it include that transaction's records."""
    topic, group = f"stable-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    owner = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"device", value=b"state", partition=0)
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 7)], owner.consumer_group_metadata(), 30)
    producer.flush(30)  # the offsets are pending until the commit below

    def commit_soon() -> None:
        time.sleep(3)
        producer.commit_transaction(30)

    committer = threading.Thread(target=commit_soon)
    reader = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group, "isolation.level": "read_committed"}
    )
    committer.start()
    try:
        started = time.monotonic()
        [committed] = reader.committed([TopicPartition(topic, 0)], timeout=30)
        waited = time.monotonic() - started
    finally:
        committer.join()
        reader.close()
        owner.close()
    assert committed.offset == 7
    assert waited >= 2.0  # it waited for the commit instead of answering the older offset
