"""Reading a topic back from the real broker in tests."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message, TopicPartition


def read_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Message]:
    """The first ``count`` messages of ``topic`` (all partitions, from the start); fails if fewer."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
        assert len(messages) == count, f"read {len(messages)} of {count} messages from {topic}"
        return messages
    finally:
        consumer.close()
