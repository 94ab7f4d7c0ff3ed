"""The group's committed offsets are for lag dashboards (the tables say where to resume), but they
must not go back: a sink commits only the partitions it holds, so a position it kept from before a
rebalance cannot overwrite what the partition's new owner committed (seen in the cluster chaos run:
lag of 340 records that never cleared on partitions that were fully landed)."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import TopicPartition

from pipeline.settings import KafkaSettings
from sinks.pii import PiiHasher
from sinks.runner import SinkRunner
from sinks.tables import build_tables, default_specs
from tests.sinks.land import settings_for


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))


def _runner(tmp_path: Path) -> tuple[SinkRunner, RecordingConsumer]:
    settings = settings_for(tmp_path, dedupe_ids=False)
    settings = settings.model_copy(update={"kafka": KafkaSettings(bootstrap_servers="127.0.0.1:1")})  # unused
    runner = SinkRunner(settings, build_tables(PiiHasher("test-secret"), default_specs("raw")))
    runner.consumer.close()
    recording = RecordingConsumer()
    runner.consumer = recording  # type: ignore[assignment]
    for partition, last in [(0, 9), (1, 19)]:
        runner.assigned.add(("t", partition))
        runner.landed[("events", "t", partition)] = last
    return runner, recording


def test_a_lost_partition_is_no_longer_committed(tmp_path: Path) -> None:
    runner, recording = _runner(tmp_path)
    runner._commit_kafka()
    runner._on_lost(runner.consumer, [TopicPartition("t", 0)])
    runner._commit_kafka()
    assert recording.commits == [[("t", 0, 10), ("t", 1, 20)], [("t", 1, 20)]]
    assert ("events", "t", 0) not in runner.landed


def test_a_revoked_partition_is_no_longer_committed(tmp_path: Path) -> None:
    runner, recording = _runner(tmp_path)
    runner._on_revoke(runner.consumer, [TopicPartition("t", 1)])
    runner._commit_kafka()
    assert recording.commits == [[("t", 0, 10)]]
