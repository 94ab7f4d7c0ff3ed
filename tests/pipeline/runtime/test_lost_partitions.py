"""Partitions lost (our session expired and the group moved on) come back restored from their
changelogs, never with the state we held before: another member may have owned them in between
and committed state and offsets past ours. And a restore starts only once the group's offsets for
the partitions are stable (the previous owner's transaction is over).

Seen in a cluster chaos run: a worker lost partitions 0 and 1 for three seconds, the other worker
took them and released and committed the events waiting there; back with them, the first one
kept its older in-memory state (``restored []``) at the newer offsets, and 36 events never landed.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import Incoming, RunnerView, Step, Stores


class OneStore:
    name = "probe"
    inputs: tuple[str, ...] = ("in",)
    store_names: tuple[str, ...] = ("waiting",)
    tick_interval_s = 60.0  # never ticks: the runner is not run

    def __init__(self) -> None:
        self.assigned: list[frozenset[int]] = []

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        self.assigned.append(partitions)

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        return Step()

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()


class StableOffsets:
    """The consumer as ``_on_assign`` sees it: what it was asked for, and when (``log``)."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.log.append(sorted((tp.topic, tp.partition) for tp in partitions))
        return partitions


def _runner(changelog: dict[int, list[tuple[bytes, bytes]]]) -> tuple[KafkaRunner, list[set[int]]]:
    config = RunnerConfig("127.0.0.1:1", group_id="probe", changelogs={"waiting": "probe-changelog"})
    runner = KafkaRunner(OneStore(), config, RuntimeMetrics(CollectorRegistry()))
    restores: list[set[int]] = []

    def restore(partitions: Collection[int]) -> None:  # the changelog as the other member left it
        if partitions:
            restores.append(set(partitions))
        for partition in partitions:
            for key, value in changelog.get(partition, []):
                runner.stores["waiting"].put(partition, key, value)

    runner._restore = restore  # type: ignore[method-assign]
    return runner, restores


def _tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition("in", p) for p in partitions]


def test_partitions_lost_and_assigned_again_are_restored_from_the_changelog() -> None:
    changelog = {0: [(b"device-a", b"waiting: 3 events")]}
    runner, restores = _runner(changelog)
    try:
        runner._on_assign(StableOffsets([]), _tps(0, 1))  # type: ignore[arg-type]
        changelog[0] = [(b"device-a", b"")]  # the other member released them and committed
        runner._on_lost(runner.consumer, _tps(0, 1))
        assert runner.owned == frozenset()
        assert dict(runner.stores["waiting"]) == {}
        runner._on_assign(StableOffsets([]), _tps(0, 1))  # type: ignore[arg-type]
    finally:
        runner.consumer.close()
    assert restores == [{0, 1}, {0, 1}]
    assert dict(runner.stores["waiting"]) == {b"device-a": b""}
    assert runner.stage.assigned == [frozenset({0, 1}), frozenset(), frozenset({0, 1})]  # type: ignore[attr-defined]


def test_partitions_kept_across_a_revocation_keep_their_state() -> None:
    runner, restores = _runner({0: [(b"device-a", b"waiting")]})
    try:
        runner._on_assign(StableOffsets([]), _tps(0, 1))  # type: ignore[arg-type]
        runner._on_revoke(runner.consumer, _tps(0, 1))
        runner._on_assign(StableOffsets([]), _tps(0))  # type: ignore[arg-type]
    finally:
        runner.consumer.close()
    assert restores == [{0, 1}]
    assert dict(runner.stores["waiting"]) == {b"device-a": b"waiting"}


def test_the_restore_waits_for_stable_offsets_first() -> None:
    runner, restores = _runner({})
    log: list[object] = restores  # type: ignore[assignment]
    try:
        runner._on_assign(StableOffsets(log), _tps(0, 1))  # type: ignore[arg-type]
        runner._on_assign(StableOffsets(log), _tps(0, 1, 2))  # type: ignore[arg-type]
    finally:
        runner.consumer.close()
    assert log == [[("in", 0), ("in", 1)], {0, 1}, [("in", 2)], {2}]
