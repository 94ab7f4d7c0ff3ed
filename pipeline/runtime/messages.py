"""A Kafka message as the stream processors take it: the envelope and the still-encoded payload.

One type for every stage (worker, triggers) and both runtimes (``pipeline.runtime.kafka``,
``pipeline.runtime.memory``).
"""

from __future__ import annotations

from pipeline.immutable import immutable


@immutable
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, str | bytes | None], ...] = ()  # control records carry webhouse-control
