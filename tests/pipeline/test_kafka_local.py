"""The project's own broker: real Apache Kafka, reached by both client stacks we use."""

import asyncio
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka
from pipeline.topics import Topics

pytestmark = pytest.mark.kafka


def test_broker_answers_and_reports_status(kafka_broker: LocalKafka) -> None:
    status = kafka_broker.status()
    assert status.running and status.pid
    assert kafka_broker.up().pid == status.pid  # up is idempotent: no second broker


def test_topics_created_idempotently_with_their_configs(kafka_bootstrap: str) -> None:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:8]}", partitions=3)
    created = ensure_topics(kafka_bootstrap, topics.specs())
    assert sorted(created) == sorted(s.name for s in topics.specs())
    assert ensure_topics(kafka_bootstrap, topics.specs()) == []

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    assert len(metadata[topics.raw_events].partitions) == 3
    resource = ConfigResource(ResourceType.TOPIC, topics.identity)
    config = admin.describe_configs([resource])[resource].result()
    assert config["cleanup.policy"].value == "compact"


def test_confluent_and_aiokafka_clients_both_work(kafka_bootstrap: str, topics_factory) -> None:
    topic = topics_factory(partitions=1).raw_events
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "compression.type": "zstd"}
    )
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"v{i}".encode())
    assert producer.flush(15) == 0

    async def read_with_aiokafka() -> list[bytes]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10_000, max_records=5)
            return [m.value for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()

    assert asyncio.run(read_with_aiokafka()) == [f"v{i}".encode() for i in range(5)]

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    seen = []
    for _ in range(30):
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen.append(msg.value())
        if len(seen) == 5:
            break
    consumer.close()
    assert seen == [f"v{i}".encode() for i in range(5)]


def test_cli_up_status_down_and_restart_on_formatted_storage(tmp_path, kafka_broker: LocalKafka) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import free_port

    env = {
        **os.environ,
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "WEBHOUSE_KAFKA__LOCAL_CONTROLLER_PORT": str(free_port()),
        "WEBHOUSE_KAFKA__LOCAL_HEAP": "256m",
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": "cli",
    }

    def webhouse(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tools.cli", "kafka", *args, "--data-dir", str(tmp_path / "k")]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)

    try:
        first = webhouse("up")
        assert first.returncode == 0, first.stderr
        assert f"{len(Topics(prefix='cli').specs())} created" in first.stdout
        assert env["WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS"] in first.stdout
        assert webhouse("status").returncode == 0
        assert "Kafka stopped" in webhouse("down").stdout
        assert webhouse("status").returncode == 1
        second = webhouse("up")  # storage already formatted: starts again, topics survived
        assert second.returncode == 0, second.stderr
        assert "0 created" in second.stdout
    finally:
        webhouse("down")
