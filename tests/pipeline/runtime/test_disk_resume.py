"""A stage on a disk store, restarted, reads only the changelog's tail, and ends in the same state as
one rebuilt from the whole changelog; also when its file missed the last commits (the process
died between the Kafka commit and the file's)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import pipeline.runtime.kafka as runtime
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.messages import Incoming
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import RunnerView, Step, Stores, StoreWrite
from pipeline.runtime.store import DiskStore, StateFiles

pytestmark = [pytest.mark.kafka]
Ends = Mapping[int, tuple[int, int]]
METRICS = RuntimeMetrics()


class Counting:
    """Counts events per key in its store."""

    name = "counting"
    store_names: tuple[str, ...] = ("counts",)
    tick_interval_s = 60.0

    def __init__(self, topic: str) -> None:
        self.inputs: tuple[str, ...] = (topic,)

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        pass

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        counts: dict[bytes, tuple[int, int]] = {}
        for message in batch:
            assert message.key is not None
            before = counts.get(message.key, (0, int(stores["counts"].get(message.key, b"0"))))[1]
            counts[message.key] = (message.partition, before + 1)
        return Step(writes=[StoreWrite("counts", p, k, str(n).encode()) for k, (p, n) in counts.items()])

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()


def run_until_read(bootstrap: str, topic: str, group: str, state_dir: Path | None, total: int) -> KafkaRunner:
    config = RunnerConfig(bootstrap, group, {"counts": f"{topic}-changelog"}, batch_within_s=0.1,
                          instance_id=uuid.uuid4().hex[:6], state_dir=state_dir)  # fmt: skip
    runner = KafkaRunner(Counting(topic), config, METRICS)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            committed = runtime.settling(probe.committed)(
                [TopicPartition(topic, p) for p in range(2)], timeout=10
            )
            if sum(max(tp.offset, 0) for tp in committed) >= total:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the stage did not read everything")
    finally:
        probe.close()
        stop.set()
        thread.join(30)
    return runner


def send(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, key=b"k%d" % (i % 37), value=b"x", partition=i % 37 % 2)  # a key, a partition
    producer.flush(30)


def counts_of(state_dir: Path) -> dict[bytes, bytes]:
    """What the stopped stage's file holds (every partition)."""
    files = StateFiles(state_dir)
    try:
        return dict(files.db.execute('SELECT key, value FROM "kv_counts"').fetchall())
    finally:
        files.close()


@pytest.mark.parametrize("file_misses_last_commits", [False, True])
def test_a_restart_reads_only_the_changelog_tail(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_misses_last_commits: bool
) -> None:
    topic, group = f"resume-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    compacted = {"cleanup.policy": "compact"}
    for future in admin.create_topics(
        [NewTopic(topic, 2, 1), NewTopic(f"{topic}-changelog", 2, 1, config=compacted)]
    ).values():
        future.result()
    read: list[int] = []
    real_read = runtime.read_changelog

    def counting_read(
        bootstrap: str, changelog: str, starts: Mapping[int, int], ends: Ends | None = None
    ) -> Iterator[tuple[int, bytes, bytes | None]]:
        for record in real_read(bootstrap, changelog, starts, ends):
            read.append(record[0])
            yield record

    monkeypatch.setattr(runtime, "read_changelog", counting_read)
    send(kafka_bootstrap, topic, 500)
    run_until_read(kafka_bootstrap, topic, group, tmp_path, 500)
    assert sum(int(v) for v in counts_of(tmp_path).values()) == 500
    if file_misses_last_commits:  # the next run's commits reach Kafka, never the file
        monkeypatch.setattr(DiskStore, "commit", lambda self, positions, source: None)
    send(kafka_bootstrap, topic, 300)
    run_until_read(kafka_bootstrap, topic, group, tmp_path, 800)
    monkeypatch.undo()
    monkeypatch.setattr(runtime, "read_changelog", counting_read)
    read.clear()

    send(kafka_bootstrap, topic, 200)
    run_until_read(kafka_bootstrap, topic, group, tmp_path, 1000)
    tail = len(read)
    rebuilt = {key: value for _, key, value in real_read(kafka_bootstrap, f"{topic}-changelog", {0: 0, 1: 0})}
    assert sum(int(v) for v in counts_of(tmp_path).values()) == 1000
    assert counts_of(tmp_path) == rebuilt
    changelog_records = sum(
        high - low for low, high in runtime._log_ends(kafka_bootstrap, f"{topic}-changelog", [0, 1]).values()
    )
    if file_misses_last_commits:
        assert 0 < tail < changelog_records  # the second run's writes, read again from the log
    else:
        assert tail == 0  # nothing was written while it was away
