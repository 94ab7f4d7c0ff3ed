"""Two sink processes in one consumer group land the same tables on S3 (moto's server), each
killed (SIGKILL) at random and restarted while events flow; every row lands exactly once, and
DuckDB reads the tables from the store. Twice: with the sink's id-dedupe on and 5% upstream
duplicates (a client retry), and strictly, with the dedupe off and no duplicates sent, so that
the offsets the commits carry are all that stands between a kill and a row landed twice.

Why it holds: partitions are split between the two by the group; a commit is a conditional PUT
of the next ``_delta_log`` version (deltalake 1.6: If-None-Match, no lock table), so two sinks
committing at once never overwrite each other, the loser re-reads and retries; each commit
carries its partitions' offsets, so a partition that moves resumes where its rows end."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import KafkaSettings, Settings, WebhouseSettings
from pipeline.topics import Topics
from sinks.duck import connect
from tests.sinks.raw_records import RawRecords, RawTopic
from tests.sinks.s3 import s3_bucket

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KILLS = 4
TABLES = "events,orders,dead_letters"


def _env(
    kafka: KafkaSettings, root: str, options: dict[str, str], member: str, dedupe: bool
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOUSE_")}
    env.update(
        {
            "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "WEBHOUSE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "WEBHOUSE_KAFKA__DEFAULT_PARTITIONS": str(kafka.default_partitions),
            "WEBHOUSE_WEBHOUSE__ROOT": root,
            "WEBHOUSE_WEBHOUSE__STORAGE_OPTIONS": json.dumps(options),
            "WEBHOUSE_WEBHOUSE__BATCH_MAX_ROWS": "60",
            "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS": "0.3",
            "WEBHOUSE_WEBHOUSE__EVENTS_SOURCE": "raw",
            "WEBHOUSE_WEBHOUSE__DEDUPE_IDS": "true" if dedupe else "false",
            # Static members: a restarted sink rejoins at once instead of after the session timeout.
            "WEBHOUSE_WEBHOUSE__GROUP_INSTANCE_ID": member,
            "WEBHOUSE_WEBHOUSE__CONSUMER_GROUP": f"sink-{kafka.topic_prefix}",
            "WEBHOUSE_METRICS__PORT": "0",
            "WEBHOUSE_LOG_LEVEL": "INFO",
        }
    )
    return env


def landed_events(root: str, options: dict[str, str]) -> int:
    try:
        table = DeltaTable(f"{root}/events", storage_options=options)
    except TableNotFoundError:
        return 0
    return table.to_pyarrow_table(columns=["message_id"]).num_rows


class Sinks:
    """The two sink processes, each restarted after a kill; logs kept per run."""

    def __init__(self, envs: dict[str, dict[str, str]], logs: Path) -> None:
        self.envs, self.logs = envs, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.runs = Counter[str]()

    def start(self, member: str) -> None:
        self.runs[member] += 1
        log = self.log(member)
        cmd = [sys.executable, "-m", "tools.cli", "sink", "--tables", TABLES]
        with log.open("ab") as out:
            self.procs[member] = subprocess.Popen(cmd, env=self.envs[member], stdout=out, stderr=out)

    def stop(self, member: str, sig: signal.Signals) -> int:
        proc = self.procs[member]
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(30)

    def log(self, member: str) -> Path:
        return self.logs / f"{member}-{self.runs[member]}.log"

    def wait_assigned(self, member: str, timeout_s: float = 60.0) -> None:
        """Until the member's current run owns partitions (its start-up is seconds of imports)."""
        deadline = time.monotonic() + timeout_s
        while "assigned" not in self.log(member).read_text():
            assert time.monotonic() < deadline, f"{member} got no partitions: {self.log(member).read_text()}"
            assert self.procs[member].poll() is None, self.log(member).read_text()[-2000:]
            time.sleep(0.05)

    def kill_all(self) -> None:
        """Whatever still runs when the test ends (a failed assertion) is killed, not left behind."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def texts(self) -> dict[str, str]:
        return {log.name: log.read_text() for log in sorted(self.logs.glob("*.log"))}


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe-on", "dedupe-off"])
def test_two_sinks_killed_at_random_land_once_on_s3(
    kafka_bootstrap: str, s3_endpoint: str, tmp_path: Path, dedupe: bool
) -> None:
    seed = int(os.environ.get("KILL_TEST_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}", default_partitions=4
    )
    topics = Topics.from_settings(kafka)
    ensure_topics(kafka_bootstrap, topics.specs())
    options = s3_bucket(s3_endpoint, "lake")
    root = "s3://lake/webhouse"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 2})
    raw = RawTopic(producer, topics.raw_events)
    records = RawRecords(rnd, anonymous_ids=40, order_every=9)

    def produce_chunk(chunk: int, n: int) -> None:
        for i in range(n):
            record = records.make(chunk, i)
            for _ in range(2 if dedupe and rnd.random() < 0.05 else 1):  # an upstream duplicate now and then
                raw.produce(record)
        producer.flush(10)

    producer.produce(topics.raw_events, b"not avro at all", key=b"anon-0")  # one dead letter, once
    produce_chunk(0, 200)
    settings = Settings(
        webhouse=WebhouseSettings(root=root, storage_options=options, events_source="raw", dedupe_ids=dedupe)
    )
    members = ["sink-a", "sink-b"]
    sinks = Sinks({m: _env(kafka, root, options, m, dedupe) for m in members}, tmp_path)
    try:
        killed = _kill_each_at_random(sinks, members, rnd, produce_chunk)
        wanted = {r["message_id"] for r in records.sent}
        deadline = time.monotonic() + 90
        while landed_events(root, options) < len(wanted) and time.monotonic() < deadline:
            time.sleep(0.5)
        # A sink restarted last may still be importing when everything has landed: a SIGTERM then
        # ends it before its handler is set (exit -15, seen in CI on 5 December 2026, 0.7 s after
        # its start). The clean stop asked of here is that of running sinks.
        for member in members:
            sinks.wait_assigned(member)
        codes = {m: sinks.stop(m, signal.SIGTERM) for m in members}
    finally:
        sinks.kill_all()

    logs = sinks.texts()
    assert codes == {"sink-a": 0, "sink-b": 0}, {k: v[-2000:] for k, v in logs.items()}
    for name, text in logs.items():
        assert "Traceback" not in text and " ERROR " not in text, f"{name}: {text[-3000:]}"
    events, lines = _check_landed_once(settings, wanted, records.expected_lines, seed)
    assert set(killed) == set(members), killed  # both were killed
    history = [
        h for t in ("events", "orders") for h in DeltaTable(f"{root}/{t}", storage_options=options).history()
    ]
    retried = sum(h.get("operationMetrics", {}).get("num_retries", 0) for h in history)
    print(
        f"two sinks on S3 (dedupe {dedupe}): seed={seed} kills={dict(killed)} runs={dict(sinks.runs)} "
        f"events={len(events)} "
        f"order lines={len(lines)} commits={len(history)}, retried after a concurrent commit: {retried}"
    )


def _kill_each_at_random(sinks: Sinks, members: list[str], rnd: random.Random,
                         produce_chunk: Callable[[int, int], None]) -> Counter[str]:  # fmt: skip
    """sink-a alone first (it owns every partition, then gives some to sink-b); then a chunk of
    events and a SIGKILL of a member owning partitions (reading, writing or committing), each
    member at least once; the killed one is started again at once. Returns the kills."""
    killed = Counter[str]()
    sinks.start("sink-a")
    sinks.wait_assigned("sink-a")
    time.sleep(rnd.uniform(0.5, 2.0))
    sinks.start("sink-b")
    for chunk in range(1, KILLS + 1):
        produce_chunk(chunk, 150)
        victim = rnd.choice(members)
        if chunk == KILLS and len(killed) < 2:  # each is killed at least once
            victim = next(m for m in members if m not in killed)
        sinks.wait_assigned(victim)
        time.sleep(rnd.uniform(0.0, 1.5))
        sinks.stop(victim, signal.SIGKILL)
        killed[victim] += 1
        sinks.start(victim)
    return killed


def _check_landed_once(settings: Settings, wanted: set[str], expected_lines: set[Any],
                       seed: int) -> tuple[list[str], list[Any]]:  # fmt: skip
    """Every event and order line once in the tables (DuckDB over the store), the one dead letter."""
    con = connect(settings)
    events = [r[0] for r in con.sql("SELECT message_id FROM events").fetchall()]
    assert len(events) == len(set(events)), f"duplicated events (seed {seed})"
    assert set(events) == wanted, f"lost {len(wanted - set(events))} events (seed {seed})"
    lines = con.sql("SELECT order_id, kind, line_no FROM orders").fetchall()
    assert len(lines) == len(set(lines)) and set(lines) == expected_lines, f"seed {seed}"
    assert con.sql("SELECT reason FROM dead_letters").fetchall() == [("undecodable",)]
    return events, lines
