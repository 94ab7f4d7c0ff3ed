"""Metadata questions asked while the broker settles are asked again, not failed."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.runtime.kafka import committed_offsets, watermarks


class SettlingConsumer:
    """Answers ``error`` ``times`` times, then the watermarks."""

    def __init__(self, error: int, times: int) -> None:
        self.error, self.times, self.asked = error, times, 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        self.asked += 1
        if self.asked <= self.times:
            raise KafkaException(KafkaError(self.error))
        return 0, 5


def test_an_unknown_partition_right_after_a_broker_resumed_is_asked_again() -> None:
    """What a fresh client hears while a resumed broker's partitions have no leader yet: the
    worker's rewind read its changelog then, and the stage failed (exit 1) instead of waiting."""
    consumer = SettlingConsumer(KafkaError._UNKNOWN_PARTITION, times=2)
    assert watermarks(consumer, TopicPartition("t", 0)) == (0, 5)  # type: ignore[arg-type]
    assert consumer.asked == 3


def test_other_errors_are_not_retried() -> None:
    consumer = SettlingConsumer(KafkaError._INVALID_ARG, times=1)
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("t", 0))  # type: ignore[arg-type]
    assert consumer.asked == 1


class MovingCoordinator:
    """Answers NOT_COORDINATOR ``times`` times (the group's coordinator moving), then the offsets."""

    def __init__(self, times: int) -> None:
        self.times, self.asked = times, 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked += 1
        if self.asked <= self.times:
            raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR, "Failed to get committed offsets"))
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]


def test_committed_offsets_are_asked_again_while_the_coordinator_moves() -> None:
    """Seen in CI: raised in the assignment callback, the error left ``consume`` and ended the
    stage's thread (the watchdog then exited the worker with 3)."""
    consumer = MovingCoordinator(times=2)
    [tp] = committed_offsets(consumer, [TopicPartition("t", 0)], timeout=1)  # type: ignore[arg-type]
    assert (tp.partition, tp.offset, consumer.asked) == (0, 7, 3)
