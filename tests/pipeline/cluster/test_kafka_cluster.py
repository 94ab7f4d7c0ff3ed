"""The 3-node local cluster: replicated topics, transactions that commit, the CLI's view of it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_cluster import LocalCluster
from pipeline.topics import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def webhouse_kafka(cluster: LocalCluster, *args: str, prefix: str = "cl") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix}
    cmd = [sys.executable, "-m", "tools.cli", "kafka", *args, "--data-dir", str(cluster.data_dir)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_cli_up_makes_topics_with_three_copies_two_in_sync(kafka_cluster: LocalCluster) -> None:
    prefix = f"cl{uuid.uuid4().hex[:8]}"
    up = webhouse_kafka(kafka_cluster, "up", prefix=prefix)  # the running cluster: idempotent
    assert up.returncode == 0, up.stderr
    assert f"{len(Topics(prefix=prefix).specs())} created" in up.stdout
    assert f"WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS={kafka_cluster.bootstrap}" in up.stdout

    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    metadata = admin.list_topics(timeout=10)
    raw = Topics(prefix=prefix).raw_events
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert {len(p.replicas) for p in metadata.topics[raw].partitions.values()} == {3}
    resource = ConfigResource(ResourceType.TOPIC, raw)
    assert admin.describe_configs([resource])[resource].result()["min.insync.replicas"].value == "2"

    status = webhouse_kafka(kafka_cluster, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("running") == 3 and "not running" not in status.stdout
    assert "under-replicated partitions: 0" in status.stdout


def test_transactions_commit_and_their_log_has_three_copies(kafka_cluster: LocalCluster) -> None:
    """The stream runtime writes with transactions: they must run, replicated, on the cluster."""
    topic = Topics(prefix=f"tx{uuid.uuid4().hex[:8]}", partitions=2)
    bootstrap = kafka_cluster.bootstrap
    ensure_topics(bootstrap, topic.specs())
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic.raw_events, b"kept", key=b"a")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic.raw_events, b"aborted", key=b"a")
    producer.abort_transaction(30)

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "isolation.level": "read_committed"}
    )
    partitions = consumer.list_topics(topic.raw_events, timeout=10).topics[topic.raw_events].partitions
    consumer.assign([TopicPartition(topic.raw_events, p, 0) for p in partitions])
    values = []
    for _ in range(50):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
        if values:
            break
    consumer.close()
    assert values == [b"kept"]
    state = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert {len(p.replicas) for p in state["__transaction_state"].partitions.values()} == {3}
    assert {len(p.replicas) for p in state["__consumer_offsets"].partitions.values()} == {3}
