"""A Kafka message as the stream processors take it: the envelope and the still-encoded payload.

One type for every agent (worker, triggers), so consumer-side repairs such as
``pipeline.runtime.offset_gaps`` serve them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, str | bytes | None], ...] = ()  # control records carry webhouse-control


def headers_of(message: Any) -> tuple[tuple[str, str | bytes | None], ...]:
    """A faust message's headers as pairs (faust gives a list of pairs, a mapping, or None)."""
    headers = message.headers
    if not headers:
        return ()
    return tuple(headers.items()) if isinstance(headers, dict) else tuple(headers)
