"""Dead letters: every stage wraps what it could not handle the same way.

A dead letter keeps the raw input, the stage, a short reason code and a readable
detail, plus where the input came from (topic/partition/offset) when it came from
Kafka. Its id is derived from the input and its origin, so a replay that fails on
the same record produces the same id and the webhouse keeps it once.
"""

from __future__ import annotations

import hashlib
from dataclasses import field
from datetime import datetime
from typing import Any

from pipeline.immutable import immutable

# The most of its input a dead letter keeps. An input may be as large as Kafka takes in one record
# (1,000,000 bytes), and its dead letter, with the input whole, would be larger: its produce failed,
# and the stage stopped on that input after every restart. A cut payload says so in the headers
# (``payload_bytes``: the input's size); the id is still of the whole input.
PAYLOAD_MAX_BYTES = 512 * 1024


@immutable
class DeadLetter:
    stage: str
    reason: str
    detail: str
    payload: bytes
    failed_at: datetime
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    message_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def dead_letter_id(self) -> str:
        h = hashlib.sha256()
        if self.source_topic is not None:
            origin = f"{self.source_topic}/{self.source_partition}/{self.source_offset}"
        else:
            origin = f"{self.message_id or ''}"
        for part in (self.stage, self.reason, origin):
            h.update(part.encode())
            h.update(b"\x00")
        h.update(self.payload)
        return h.hexdigest()[:32]

    def to_record(self) -> dict[str, Any]:
        """The Avro record of schemas/dead_letter.avsc."""
        headers = dict(self.headers)
        if len(self.payload) > PAYLOAD_MAX_BYTES:
            headers["payload_bytes"] = str(len(self.payload))
        return {
            "dead_letter_id": self.dead_letter_id,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail[:4000],
            "payload": self.payload[:PAYLOAD_MAX_BYTES],
            "failed_at": self.failed_at,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "message_id": self.message_id,
            "headers": headers,
        }
