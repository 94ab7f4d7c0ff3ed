"""How much of its input a stage's consumer group has yet to process, seen from outside.

Stages commit offsets inside transactions, so a committed offset sits before the
commit marker that follows the batch: "high watermark minus committed offset" is never
zero on a transactional topic. What counts is whether a *committed record* lies at or
after the group's offset; this reads (never commits) to find out.

A heartbeat is not work left: the worker moves a quiet partition's event clock with the wall
clock and says so downstream every few seconds (an ``active`` watermark record) for as long as
a visit stays open, so a reader that counted those would never see a stage done. Every other
record counts: data, ``end`` and the ``idle``/``ended`` watermarks that let stages close what
they hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.errors import ProcessingError
from pipeline.runtime.control import WATERMARK, Progress, SourceState, control_kind
from pipeline.runtime.kafka import settling, watermarks


def unprocessed(bootstrap: str, group_id: str, topics: Iterable[str], limit: int = 1) -> int:
    """Committed records on ``topics`` past ``group_id``'s committed offsets, heartbeats aside
    (counting stops at ``limit`` per partition: enough to tell "done" from "not yet")."""
    offsets = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False})
    try:
        metadata = offsets.list_topics(timeout=10).topics
        wanted = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        committed = settling(offsets.committed)(wanted, timeout=10) if wanted else []
    finally:
        offsets.close()
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"progress-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        start = []
        for tp in committed:
            low, high = watermarks(reader, tp)
            at = tp.offset if tp.offset >= 0 else low
            if high > at:
                start.append(TopicPartition(tp.topic, tp.partition, at))
        return _count(reader, start, limit)
    finally:
        reader.close()


def _count(reader: Consumer, start: list[TopicPartition], limit: int) -> int:
    if not start:
        return 0
    reader.assign(start)
    open_parts = {(tp.topic, tp.partition) for tp in start}
    found: dict[tuple[str, int], int] = {}
    while open_parts:
        messages = reader.consume(500, 2.0)
        if not messages:
            break  # an open transaction holds the partition back: its records are not done either
        for m in messages:
            where = (str(m.topic()), int(m.partition() or 0))
            error = m.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise ProcessingError("progress", f"{where}: {error}")
            if error is None and not is_heartbeat(m):
                found[where] = found.get(where, 0) + 1
            if error is not None or found.get(where, 0) >= limit:
                open_parts.discard(where)
    return sum(found.values()) + (len(open_parts) if open_parts else 0)


def is_heartbeat(message: Message) -> bool:
    """An ``active`` watermark record: the clock moved on, nothing for a stage to finish."""
    if control_kind(message.headers()) != WATERMARK:
        return False
    return Progress.from_bytes(message.value() or b"").state is SourceState.ACTIVE
