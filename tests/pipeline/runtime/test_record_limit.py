"""The in-memory broker refuses the records Kafka's producer refuses, so that a stage writing one
fails in process as it would in production (a step of held inputs did: ``triggers.hold``)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.errors import ProduceError
from pipeline.runtime.memory import RECORD_MAX_BYTES, MemoryBroker
from pipeline.runtime.stage import Record


def test_the_memory_broker_takes_a_record_up_to_kafka_s_largest_and_refuses_one_past_it() -> None:
    broker = MemoryBroker(1)
    broker.append(Record("t", b"k", b"x" * (RECORD_MAX_BYTES - 1), 0))
    with pytest.raises(ProduceError, match="Kafka takes"):
        broker.append(Record("t", b"k", b"x" * RECORD_MAX_BYTES, 0))


def test_the_limit_is_the_kafka_producer_s_own() -> None:
    """librdkafka checks the size as a record is queued: no broker needed. Fails if its default
    ``message.max.bytes`` changes, so that ``RECORD_MAX_BYTES`` follows it."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1"})
    producer.produce("t", key=b"k", value=b"x" * (RECORD_MAX_BYTES - 1000))
    with pytest.raises(KafkaException) as refused:
        producer.produce("t", key=b"k", value=b"x" * (RECORD_MAX_BYTES + 1))
    assert refused.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    producer.purge()
    producer.flush(0)
