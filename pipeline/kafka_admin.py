"""Creating the project's topics, idempotently, from the specs in pipeline/topics.py.

Replication follows the cluster: 3 copies and ``min.insync.replicas=2`` as soon as it has 3
brokers (with the producers' ``acks=all``, an acknowledged event is on two brokers), 1 on a
single broker; ``kafka.replication_factor`` can only raise it.

Services call ``prepare_topics`` at start: it creates what is missing when
``kafka.create_topics`` allows it (by default only on a loopback broker, where the
project's own `webhouse kafka up` runs), and otherwise logs each missing topic by name.
A service started before Kafka answers waits for it (``require_topics``, up to
``kafka.start_wait_s``) instead of dying on its first metadata request with a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.errors import KafkaUnavailableError, LocalKafkaError, MissingTopicsError
from pipeline.safe_defaults import is_loopback
from pipeline.settings import KafkaSettings
from pipeline.topics import TopicSpec

log = logging.getLogger(__name__)


def replication_for(brokers: int, configured: int = 1) -> int:
    """Copies of each partition: 3 from 3 brokers up, else 1 per broker; ``configured`` raises it."""
    return max(configured, min(3, brokers))


def min_insync_for(replication: int) -> int:
    """A majority of the copies from 3 up (one broker may be lost without refusing writes); 1 below,
    where a majority of 2 would refuse every write while either broker is down."""
    return replication // 2 + 1 if replication >= 3 else 1


def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], replication: int = 1, timeout_s: float = 10.0
) -> list[str]:
    """Create the topics that do not exist yet (see ``replication_for``); return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    specs = list(specs)
    metadata = admin.list_topics(timeout=timeout_s)
    existing = set(metadata.topics)
    rf = replication_for(len(metadata.brokers), replication)
    durable = {"min.insync.replicas": str(min_insync_for(rf))} if rf >= 3 else {}
    wanted = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=rf, config={**s.config, **durable})
        for s in specs
        if s.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=15, request_timeout=20).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise LocalKafkaError(f"could not create topic {name}: {err}") from exc
    log.info("created topics: %s", ", ".join(created))
    return created


def missing_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """The names the broker does not know (KafkaException when it does not answer)."""
    existing = set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout_s).topics)
    return [name for name in names if name not in existing]


def may_create_topics(kafka: KafkaSettings) -> bool:
    """``kafka.create_topics``; unset: only when every bootstrap server is on loopback."""
    if kafka.create_topics is not None:
        return kafka.create_topics
    hosts = [server.strip().rsplit(":", 1)[0] for server in kafka.bootstrap_servers.split(",")]
    return all(is_loopback(host) for host in hosts if host)


def prepare_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec], timeout_s: float = 10.0) -> list[str]:
    """Create missing topics when allowed; return (and log, by name) those still missing."""
    specs = list(specs)
    if may_create_topics(kafka):
        ensure_topics(kafka.bootstrap_servers, specs, kafka.replication_factor, timeout_s)
        return []
    missing = missing_topics(kafka.bootstrap_servers, [s.name for s in specs], timeout_s)
    for name in missing:
        log.error("Kafka topic %s is missing and kafka.create_topics is off: create it", name)
    return missing


def require_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec]) -> None:
    """``prepare_topics`` for services without a readiness endpoint: missing topics stop the start.
    Kafka not answering is waited out for ``kafka.start_wait_s``, then a ``KafkaUnavailableError``."""
    specs = list(specs)
    deadline = time.monotonic() + kafka.start_wait_s
    while True:
        try:
            missing = prepare_topics(kafka, specs, timeout_s=min(10.0, max(1.0, deadline - time.monotonic())))
            break
        except KafkaException as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaUnavailableError(
                    f"Kafka at {kafka.bootstrap_servers} did not answer within {kafka.start_wait_s:.0f}s "
                    f"(kafka.start_wait_s): {exc.args[0] if exc.args else exc}"
                ) from exc
            log.warning("Kafka at %s does not answer (%s); waiting, %.0fs left", kafka.bootstrap_servers,
                        exc.args[0] if exc.args else exc, left)  # fmt: skip
            time.sleep(min(2.0, max(0.1, left)))
    if missing:
        raise MissingTopicsError(missing)
