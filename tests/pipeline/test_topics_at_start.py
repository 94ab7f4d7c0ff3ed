"""Services create the project's topics at start when allowed; otherwise they say which are missing,
and a produce to a missing topic fails fast, naming it."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.collector.server import ThreadedCollector
from pipeline.errors import KafkaUnavailableError, MissingTopicsError
from pipeline.kafka_admin import may_create_topics, missing_topics, require_topics
from pipeline.settings import CollectorSettings, KafkaSettings, Settings, WebhouseSettings
from pipeline.topics import Topics

KEY = "topics-test-key"


@pytest.mark.parametrize(
    ("bootstrap", "setting", "allowed"),
    [
        ("127.0.0.1:9092", None, True),
        ("localhost:9092,[::1]:9093", None, True),
        ("127.0.0.1:9092,kafka-2.internal:9092", None, False),
        ("10.0.0.5:9092", None, False),
        ("10.0.0.5:9092", True, True),
        ("127.0.0.1:9092", False, False),
    ],
)
def test_topics_are_created_by_default_only_on_a_loopback_broker(
    bootstrap: str, setting: bool | None, allowed: bool
) -> None:
    assert may_create_topics(KafkaSettings(bootstrap_servers=bootstrap, create_topics=setting)) is allowed


def _fresh_kafka(bootstrap: str, create: bool | None) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        default_partitions=2,
        create_topics=create,
    )


def _settings(kafka: KafkaSettings) -> Settings:
    collector = CollectorSettings(port=0, write_keys={KEY: "shop"}, produce_timeout_s=10.0)
    return Settings(kafka=kafka, collector=collector)


def _call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if body is not None:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(f"{KEY}:".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # the error holds the response open
            return exc.code, json.loads(exc.read())


TRACK = {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "m-topics-1"}


@pytest.mark.kafka
def test_the_collector_creates_the_topics_on_a_local_broker(kafka_bootstrap: str) -> None:
    kafka = _fresh_kafka(kafka_bootstrap, None)
    names = [spec.name for spec in Topics.from_settings(kafka).specs()]
    assert missing_topics(kafka_bootstrap, names) == names
    with ThreadedCollector(_settings(kafka)) as collector:
        assert missing_topics(kafka_bootstrap, names) == []
        assert _call(f"{collector.url}/health/ready") == (200, {"status": "ready"})
        status, body = _call(f"{collector.url}/v1/track", TRACK)
        assert (status, body["accepted"]) == (200, 1)


@pytest.mark.kafka
def test_without_create_topics_the_collector_names_the_missing_topic(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = _fresh_kafka(kafka_bootstrap, False)
    raw = Topics.from_settings(kafka).raw_events
    with caplog.at_level(logging.ERROR), ThreadedCollector(_settings(kafka)) as collector:
        assert f"Kafka topic {raw} is missing and kafka.create_topics is off" in caplog.text
        status, body = _call(f"{collector.url}/health/ready")
        assert status == 503
        assert raw in body["detail"]
        status, body = _call(f"{collector.url}/v1/track", TRACK)
        # The topic is named, not a 10 s "timed out" (produce_timeout_s): librdkafka gave up on the
        # unknown topic after MISSING_TOPIC_MS.
        assert (status, body["code"]) == (503, "kafka_unavailable")
        assert f"topic {raw} does not exist" in body["message"]
        assert "unacknowledged" not in body["message"]
    assert f"cannot produce: topic {raw} does not exist" in caplog.text
    assert missing_topics(kafka_bootstrap, [raw]) == [raw]  # nothing was created behind our back


@pytest.mark.kafka
def test_worker_and_sink_refuse_to_start_without_their_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    from sinks.pii import PiiHasher
    from sinks.runner import SinkRunner
    from sinks.tables import build_tables, default_specs

    kafka = _fresh_kafka(kafka_bootstrap, False)
    topics = Topics.from_settings(kafka)
    with pytest.raises(MissingTopicsError) as err:
        require_topics(kafka, topics.specs())  # what `webhouse worker` and `triggers run` call first
    assert err.value.topics == [spec.name for spec in topics.specs()]
    assert "WEBHOUSE_KAFKA__CREATE_TOPICS" in str(err.value)
    settings = Settings(kafka=kafka, webhouse=WebhouseSettings(root=str(tmp_path)))
    tables = build_tables(PiiHasher("test-secret"), default_specs("raw"))
    with pytest.raises(MissingTopicsError, match=topics.raw_events):
        SinkRunner(settings, tables).run(threading.Event(), assign_all=True)


@pytest.mark.kafka
def test_the_sink_creates_its_topics_when_allowed(kafka_bootstrap: str, tmp_path: Path) -> None:
    from sinks.pii import PiiHasher
    from sinks.runner import SinkRunner
    from sinks.tables import build_tables, default_specs

    kafka = _fresh_kafka(kafka_bootstrap, True)
    stop = threading.Event()
    stop.set()  # start, prepare, and stop at once
    settings = Settings(kafka=kafka, webhouse=WebhouseSettings(root=str(tmp_path)))
    runner = SinkRunner(settings, build_tables(PiiHasher("s"), default_specs("raw")))
    assert runner.run(stop, assign_all=True) == 0
    names = [spec.name for spec in Topics.from_settings(kafka).specs()]
    assert missing_topics(kafka_bootstrap, names) == []


def test_a_service_starting_before_kafka_answers_waits_then_says_which_servers() -> None:
    """No broker at all (a closed port): the start waits ``kafka.start_wait_s`` (a warning per
    try), then one typed error naming the servers and the setting, instead of a traceback."""
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", create_topics=True, start_wait_s=3)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match=r"Kafka at 127\.0\.0\.1:1 did not answer within 3s"):
        require_topics(kafka, Topics.from_settings(kafka).specs())
    assert time.monotonic() - started >= 3
