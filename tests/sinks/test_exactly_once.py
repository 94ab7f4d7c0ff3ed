"""Crash the sink with kill -9 at random points; the tables must still hold every row exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable

from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tests.sinks.raw_records import RawRecords, RawTopic

ITERATIONS = 50


def _env(kafka: KafkaSettings, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOUSE_")}
    env.update(
        {
            "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "WEBHOUSE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "WEBHOUSE_KAFKA__DEFAULT_PARTITIONS": str(kafka.default_partitions),
            "WEBHOUSE_WEBHOUSE__ROOT": str(root),
            "WEBHOUSE_WEBHOUSE__BATCH_MAX_ROWS": "40",
            "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS": "0.15",
            "WEBHOUSE_WEBHOUSE__EVENTS_SOURCE": "raw",
            "WEBHOUSE_WEBHOUSE__GROUP_INSTANCE_ID": "kill-test",
            "WEBHOUSE_WEBHOUSE__CONSUMER_GROUP": f"sink-{kafka.topic_prefix}",
            "WEBHOUSE_METRICS__PORT": "0",
            "WEBHOUSE_LOG_LEVEL": "INFO",
        }
    )
    return env


def _sink(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    tables = "events,orders,dead_letters"
    cmd = [sys.executable, "-m", "tools.cli", "sink", "--assign-all", "--tables", tables, *extra]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=out)


def _ids(root: Path, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    data = DeltaTable(str(root / table)).to_pyarrow_table(columns=columns)
    return list(zip(*(data[c].to_pylist() for c in columns), strict=True))


@pytest.mark.kafka
@pytest.mark.slow
def test_kill_minus_nine_neither_loses_nor_duplicates(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    seed = int(os.environ.get("KILL_TEST_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    topics = Topics.from_settings(kafka_settings)
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap_servers, "linger.ms": 2})
    raw = RawTopic(producer, topics.raw_events)
    records = RawRecords(rnd, anonymous_ids=25, order_every=7)

    def produce_chunk(chunk: int, n: int) -> None:
        for i in range(n):
            raw.produce(records.make(chunk, i))
            if rnd.random() < 0.08:  # an upstream duplicate: same record, later offset
                raw.produce(rnd.choice(records.sent))
        producer.flush(10)

    # One undecodable message: it must become exactly one dead letter, however often it is replayed.
    producer.produce(topics.raw_events, b"not avro at all", key=b"anon-0")
    produce_chunk(0, 150)
    env = _env(kafka_settings, tmp_path / "wh")
    log = tmp_path / "sink.log"
    kills: Counter[str] = Counter()
    started = time.monotonic()
    for chunk in range(1, ITERATIONS + 1):
        produce_chunk(chunk, 100)
        run_log = tmp_path / f"sink-{chunk}.log"
        proc = _sink(env, run_log)
        if chunk % 5 == 0:  # one run in five dies anywhere in its start-up
            time.sleep(rnd.uniform(0.0, 1.5))
            kills["during start-up"] += 1
        else:  # the others once they own their partitions: while reading, writing, committing
            deadline = time.monotonic() + 15
            while "assigned" not in run_log.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rnd.uniform(0.0, 0.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills["killed"] += 1
        proc.wait(10)
        kills["exit"] += proc.returncode == 0
    loop_s = time.monotonic() - started
    final = _sink({**env, "WEBHOUSE_WEBHOUSE__BATCH_MAX_ROWS": "2000"}, log, "--exit-when-idle")
    final.wait(120)
    assert final.returncode == 0, log.read_text()[-3000:]
    for run_log in tmp_path.glob("sink*.log"):
        text = run_log.read_text()
        assert "Traceback" not in text and " ERROR " not in text, text[-3000:]

    events = _ids(tmp_path / "wh", "events", ["message_id"])
    assert len(events) == len(set(events)), f"duplicates (seed {seed})"
    assert {e[0] for e in events} == {r["message_id"] for r in records.sent}, f"loss (seed {seed})"
    lines = _ids(tmp_path / "wh", "orders", ["order_id", "kind", "line_no"])
    assert len(lines) == len(set(lines)) and set(lines) == records.expected_lines, f"seed {seed}"
    letters = _ids(tmp_path / "wh", "dead_letters", ["dead_letter_id", "reason"])
    assert [r[1] for r in letters] == ["undecodable"]
    assert kills["killed"] >= ITERATIONS // 2, kills  # most runs really were cut short
    table = DeltaTable(str(tmp_path / "wh" / "events"))
    orphans = {p.name for p in (tmp_path / "wh" / "events").rglob("*.parquet")} - {
        Path(u).name for u in table.file_uris()
    }
    print(
        f"kill-9: seed={seed} runs={ITERATIONS} {dict(kills)} events={len(events)} lines={len(lines)} "
        f"events commits={table.version() + 1} files left by crashed writes={len(orphans)} "
        f"loop {loop_s:.0f}s, catch-up {time.monotonic() - started - loop_s:.0f}s"
    )
