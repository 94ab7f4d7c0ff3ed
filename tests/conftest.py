"""Shared fixtures. Kafka tests run against a real broker started by pipeline.kafka_local.

The broker is session-scoped (one per test run, ~3 s to start) on free loopback ports;
each test gets its own topic prefix through ``topics_factory`` so tests never see each
other's data. A broker that cannot start fails the tests that need it: never a skip.
A 3-node cluster for the tests that need replication is in tests/pipeline/cluster/.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka, free_port  # noqa: F401 - tests import free_port from here
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics


@pytest.fixture(autouse=True)
def _clean_webhouse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build settings explicitly; a developer's WEBHOUSE_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("WEBHOUSE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka.ephemeral(tmp_path_factory.mktemp("kafka"))
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture
def kafka_bootstrap(kafka_broker: LocalKafka) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Kafka settings pointing at the test broker under a fresh topic prefix, topics created."""
    settings = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        default_partitions=2,
    )
    ensure_topics(kafka_bootstrap, Topics.from_settings(settings).specs())
    return settings


@pytest.fixture
def topics_factory(kafka_bootstrap: str) -> Callable[..., Topics]:
    """Make a fresh, created set of project topics: ``topics_factory(partitions=2)``."""

    def make(partitions: int = 2) -> Topics:
        topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}", partitions=partitions)
        ensure_topics(kafka_bootstrap, topics.specs())
        return topics

    return make


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker for one test alone, which it may pause (SIGSTOP): resumed before it is stopped."""
    broker = LocalKafka.ephemeral(tmp_path / "kafka")
    broker.up()
    try:
        yield broker
    finally:
        pid = broker.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        broker.down()
