"""The sink's liveness: an empty consumer group is a stall it reports and exits on; SIGTERM and
SIGINT stop it within the bound even when the broker does not answer.

Each test runs `webhouse sink` as a child process (a stall exit and a signal only show in a
process of its own) against a broker of its own, which the SIGTERM test pauses (SIGSTOP).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from pipeline.health import EXIT_STALLED
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka, free_port
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from sinks.tables import default_specs, source_topic
from tests.liveness import STOP_BOUND_S, get, start_service, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def start_sink(
    bootstrap: str, prefix: str, root: Path, group: str, **env: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    settings = {
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_WEBHOUSE__ROOT": str(root),
        "WEBHOUSE_WEBHOUSE__CONSUMER_GROUP": group,
        "WEBHOUSE_METRICS__PORT": str(port),
        **env,
    }
    return start_service(["sink"], settings, root.parent / f"sink-{port}.log"), port


def test_an_empty_consumer_group_is_a_stall_reported_then_exited_on(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """Another member holds every partition (the sink that "sat in an empty consumer group landing
    nothing, alive and silent"): /health/ready says so, then the sink exits 3 for a restart."""
    topics = Topics.from_settings(kafka_settings)
    group = f"{kafka_settings.topic_prefix}-sink"
    sink_topics = sorted({source_topic(spec, topics) for spec in default_specs()})
    # The holder speaks only a protocol the sink does not (cooperative-sticky against the sink's
    # range/roundrobin): the group refuses the sink's join, so it never gets a partition whatever
    # the timing (with a common protocol it would get half of them).
    holder = Consumer({"bootstrap.servers": kafka_settings.bootstrap_servers, "group.id": group,
                       "session.timeout.ms": 10_000,
                       "partition.assignment.strategy": "cooperative-sticky"})  # fmt: skip
    holder.subscribe(sink_topics)
    done = threading.Event()
    assigned = threading.Event()

    def hold() -> None:
        while not done.is_set():
            holder.poll(0.2)
            if holder.assignment():
                assigned.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert assigned.wait(30), "the holder never got the partitions"
        (tmp_path / "tables").mkdir()
        sink, port = start_sink(
            kafka_settings.bootstrap_servers, kafka_settings.topic_prefix, tmp_path / "tables", group,
            WEBHOUSE_HEALTH__STALL_AFTER_S="8", WEBHOUSE_HEALTH__STOP_WITHIN_S="10",
        )  # fmt: skip
        try:
            wait_for("serving /health", lambda: get(port, "/health")[0] == 200, 30)
            unassigned = (503, {"status": "ok", "ready": False, "detail": "no partitions assigned"})
            wait_for("reporting no partitions", lambda: get(port, "/health/ready") == unassigned, 10)
            code = sink.wait(timeout=60)
        finally:
            if sink.poll() is None:
                sink.kill()
        assert code == EXIT_STALLED
        log = next(tmp_path.glob("sink-*.log")).read_text()
        assert "no progress for" in log and "while there is work" in log
    finally:
        done.set()
        thread.join(10)
        holder.close()


def test_an_idle_caught_up_sink_is_not_a_stall(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    """Empty topics, nothing to land: well past the bound the sink is still up and healthy (the
    bug this names: a partition never read from counted as work, and a healthy sink exited)."""
    (tmp_path / "tables").mkdir()
    sink, port = start_sink(
        kafka_settings.bootstrap_servers, kafka_settings.topic_prefix, tmp_path / "tables",
        f"{kafka_settings.topic_prefix}-sink", WEBHOUSE_HEALTH__STALL_AFTER_S="10",
    )  # fmt: skip
    try:
        wait_for("ready", lambda: get(port, "/health/ready")[0] == 200, 60)
        time.sleep(20)  # twice the bound
        assert sink.poll() is None
        assert get(port, "/health") == (200, {"status": "ok", "ready": True, "detail": "ready"})
    finally:
        sink.terminate()
        sink.wait(timeout=STOP_BOUND_S)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_sink_within_the_bound_even_with_the_broker_paused(
    own_broker: LocalKafka, tmp_path: Path, signum: signal.Signals
) -> None:
    prefix = "stop"
    ensure_topics(own_broker.bootstrap, Topics(prefix=prefix, partitions=2).specs())
    (tmp_path / "tables").mkdir()
    sink, port = start_sink(own_broker.bootstrap, prefix, tmp_path / "tables", f"{prefix}-sink")
    try:
        wait_for("ready", lambda: get(port, "/health/ready")[0] == 200, 60)
        pid = own_broker.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # a broker that does not answer: close() cannot leave the group
        sink.send_signal(signum)
        code = sink.wait(timeout=STOP_BOUND_S)
    finally:
        if sink.poll() is None:
            sink.kill()
    assert code in (0, 4)  # stopped cleanly, or by the stop deadline (exit 4), never hung
