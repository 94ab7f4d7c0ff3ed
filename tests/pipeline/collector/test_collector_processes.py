"""`webhouse collector --processes 2`: two processes serve one port, every accepted event is on
the raw topic once, /metrics sums both processes whichever answers, SIGTERM stops them all,
a process that dies stops the others and the command (exit 1), and the processes of a
command SIGKILLed stop by themselves."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tests.liveness import wait_for
from tests.pipeline.collector.collector_process import WRITE_KEY, collector_process
from tests.pipeline.collector.kafka_read import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ACCEPTED = "webhouse_collector_events_accepted"


@contextmanager
def two_processes(kafka: KafkaSettings, metrics_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}  # set by the test: it reads each process's files
    with collector_process(kafka, "--processes", "2", env=env, announces="with 2 processes") as started:
        yield started


def _pids(metrics_dir: Path) -> set[int]:
    """The collector processes, by the file each one's in-flight gauge writes as it starts."""
    return {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livesum_*.db")}


def _accepted_by(metrics_dir: Path, pid: int) -> float:
    files = [str(p) for p in metrics_dir.glob(f"counter_{pid}.db")]
    return sum(
        s.value
        for metric in MultiProcessCollector.merge(files)
        for s in metric.samples
        if s.name == f"{ACCEPTED}_total"
    )


def _scraped_total(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"{ACCEPTED}_total{{")
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_processes_serve_one_port_and_each_event_lands_once(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    sent: list[str] = []
    with two_processes(kafka_settings, metrics_dir) as (process, url):
        for request in range(40):  # a connection per request: the kernel spreads them over both
            events = [
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "anonymousId": f"a{request}",
                    "messageId": f"m{request}-{i}",
                }
                for i in range(10)
            ]
            response = requests.post(
                f"{url}/v1/batch", json={"batch": events}, auth=(WRITE_KEY, ""), timeout=30
            )
            assert response.status_code == 200, response.text
            sent += [e["messageId"] for e in events]
        pids = _pids(metrics_dir)
        assert len(pids) == 2
        assert all(_accepted_by(metrics_dir, pid) > 0 for pid in pids)  # both took requests
        assert sum(_accepted_by(metrics_dir, pid) for pid in pids) == 400
        assert [_scraped_total(url) for _ in range(6)] == [400.0] * 6  # whichever process answers

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not any(_alive(pid) for pid in pids)

    topic = Topics.from_settings(kafka_settings).raw_events
    serde = SingleObjectSerde("customer_event")
    landed = [
        serde.decode(cast(bytes, m.value()))["message_id"]
        for m in read_topic(kafka_settings.bootstrap_servers, topic, 400)
    ]
    assert sorted(landed) == sorted(sent)


def test_a_process_that_dies_stops_the_others_and_the_command(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    with two_processes(kafka_settings, metrics_dir) as (process, url):
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        first, second = sorted(_pids(metrics_dir))
        os.kill(first, signal.SIGKILL)
        assert process.wait(timeout=60) == 1
        wait_for("the other collector process gone", lambda: not _alive(second), 30)
    with pytest.raises(requests.ConnectionError):  # nothing serves the port any more
        requests.get(f"{url}/health", timeout=5)


def test_the_processes_of_a_killed_command_stop_by_themselves(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    with two_processes(kafka_settings, metrics_dir) as (process, url):
        pids = _pids(metrics_dir)
        assert len(pids) == 2
        process.kill()  # no SIGTERM passed on: they would serve the port beside the next run's
        process.wait(timeout=30)
        wait_for("both collector processes gone", lambda: not any(_alive(pid) for pid in pids), 60)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)
