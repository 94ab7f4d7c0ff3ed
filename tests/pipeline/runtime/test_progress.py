"""``unprocessed``, the outside view of a stage's progress that every settle wait uses: a quiet
partition's heartbeats (``active`` watermarks, every few seconds while a visit stays open) are
not work left, or no wait would ever end; data, ``end`` and ``idle``/``ended`` watermarks are."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.runtime.control import Progress, SourceState, end_headers, watermark_headers
from pipeline.runtime.progress import unprocessed
from pipeline.runtime.stage import Headers

pytestmark = [pytest.mark.kafka]


def _topic(bootstrap: str) -> str:
    topic = f"progress-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    return topic


def _send(bootstrap: str, topic: str, *records: tuple[bytes, Headers | None]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value, headers in records:
        producer.produce(topic, value, partition=0, headers=None if headers is None else list(headers))
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def _watermark(state: SourceState) -> tuple[bytes, Headers]:
    return Progress(state, 1_000).to_bytes(), watermark_headers()


def test_heartbeats_past_the_committed_offset_are_no_work_left(kafka_bootstrap: str) -> None:
    topic, group = _topic(kafka_bootstrap), f"g-{uuid.uuid4().hex[:8]}"
    _send(kafka_bootstrap, topic, (b"event", None), *[_watermark(SourceState.ACTIVE)] * 3)
    _commit(kafka_bootstrap, group, topic, 1)
    assert unprocessed(kafka_bootstrap, group, [topic], limit=10) == 0
    _commit(kafka_bootstrap, group, topic, 0)
    assert unprocessed(kafka_bootstrap, group, [topic], limit=10) == 1


@pytest.mark.parametrize("state", [SourceState.IDLE, SourceState.ENDED])
def test_idle_and_ended_watermarks_and_the_end_of_input_are_work_left(
    kafka_bootstrap: str, state: SourceState
) -> None:
    topic, group = _topic(kafka_bootstrap), f"g-{uuid.uuid4().hex[:8]}"
    _send(kafka_bootstrap, topic, _watermark(SourceState.ACTIVE), _watermark(state), (b"", end_headers()))
    _commit(kafka_bootstrap, group, topic, 0)
    assert unprocessed(kafka_bootstrap, group, [topic], limit=10) == 2
