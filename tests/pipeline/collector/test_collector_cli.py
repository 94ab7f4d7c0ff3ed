"""`webhouse collector` as its own process: serves, stops cleanly on SIGTERM, stops within 30 s
on SIGTERM or SIGINT even with the broker paused and a request waiting on it, and an event it
acknowledged survives the process being killed outright right after."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import cast

import pytest
import requests

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tests.pipeline.collector.collector_process import WRITE_KEY, collector_process
from tests.pipeline.collector.kafka_read import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_sigterm_stops_cleanly(kafka_settings: KafkaSettings) -> None:
    with collector_process(kafka_settings) as (process, url):
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_within_30s_with_the_broker_paused(tmp_path: Path, signum: signal.Signals) -> None:
    broker = LocalKafka.ephemeral(tmp_path / "kafka")  # its own: this test freezes it
    broker.up()
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, topic_prefix="stop", default_partitions=2)
        ensure_topics(broker.bootstrap, Topics.from_settings(kafka).specs())
        with collector_process(kafka) as (process, url):
            pid = broker.pid()
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            event = {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "stuck"}
            waiting = threading.Thread(  # a request that waits for an acknowledgement that never comes
                target=lambda: _post_ignoring_errors(f"{url}/v1/track", event), daemon=True
            )
            waiting.start()
            time.sleep(1.0)
            process.send_signal(signum)
            assert process.wait(timeout=30) in (0, 4)  # clean, or cut off by the stop deadline
    finally:
        pid = broker.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        broker.down()


def _post_ignoring_errors(url: str, event: dict[str, str]) -> None:
    with contextlib.suppress(requests.RequestException):  # it went away mid-request: a client retries
        requests.post(url, json=event, auth=(WRITE_KEY, ""), timeout=60)


def test_an_acknowledged_event_survives_kill_9(kafka_settings: KafkaSettings) -> None:
    with collector_process(kafka_settings) as (process, url):
        event = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "kept"}
        response = requests.post(f"{url}/v1/track", json=event, auth=(WRITE_KEY, ""), timeout=30)
        assert response.status_code == 200
        process.kill()  # SIGKILL: no flush, no goodbye
        process.wait(timeout=30)
    topic = Topics.from_settings(kafka_settings).raw_events
    (message,) = read_topic(kafka_settings.bootstrap_servers, topic, 1)
    record = SingleObjectSerde("customer_event").decode(cast(bytes, message.value()))
    assert (record["message_id"], record["source"], record["event"]) == ("kept", "cli", "Order Completed")
