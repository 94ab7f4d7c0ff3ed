"""Creating the project's topics, idempotently, from the specs in pipeline/topics.py."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.errors import LocalKafkaError
from pipeline.topics import TopicSpec

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    specs = list(specs)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication, config=s.config)
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
