"""When an absence window may close: once every source that could still deliver its event has passed it.

Trigger input arrives on the triggers topic from several source partitions (enriched
events and sessions, one per worker partition), routed by customer. A window ("no order
within the hour") must not close at the fastest source's event time while the order is
still unread on a slower one. So the route agent, after each batch, reports to *every*
triggers partition the latest event time it routed from each source partition it read
(a ``watermark`` input), and reports a source that is caught up and quiet as idle. Each
triggers partition keeps these ``SourceClocks``; its watermark is the lowest time over
the sources that are not idle, never moves back, and exists only once every expected
source has reported. Reports travel in order behind the inputs they cover, so a
partition that has read a report has read everything routed before it.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

from pipeline.topics import Topics

WATERMARK_KIND = "watermark"


def source_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def expected_sources(topics: Topics) -> list[str]:
    """The source partitions whose reports a triggers partition waits for."""
    return [
        source_name(topic, partition)
        for topic in (topics.enriched_events, topics.sessions)
        for partition in range(topics.partitions)
    ]


@dataclass(slots=True)
class SourceClocks:
    """Per triggers partition: the latest reported event time (ms) and idleness of each source."""

    latest: dict[str, int] = field(default_factory=dict)
    idle: set[str] = field(default_factory=set)
    watermark: int | None = None

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> SourceClocks:
        data = json.loads(raw) if raw else None
        if not isinstance(data, dict):  # nothing stored, or the older one-number clock: start over
            return cls()
        return cls(dict(data.get("latest", {})), set(data.get("idle", [])), data.get("watermark"))

    def to_bytes(self) -> bytes:
        data = {"latest": self.latest, "idle": sorted(self.idle), "watermark": self.watermark}
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    def report(self, source: str, ms: int | None) -> None:
        """``ms`` None: the source is caught up and quiet, it holds nothing back."""
        if ms is None:
            self.idle.add(source)
            return
        self.idle.discard(source)
        self.latest[source] = max(ms, self.latest.get(source, ms))

    def advance(self, expected: Collection[str]) -> int | None:
        """The watermark after the reports so far (unchanged until every expected source reported)."""
        if any(s not in self.latest and s not in self.idle for s in expected):
            return self.watermark
        active = [self.latest[s] for s in expected if s not in self.idle and s in self.latest]
        known = [self.latest[s] for s in expected if s in self.latest]
        candidate = min(active) if active else max(known, default=None)
        if candidate is not None and (self.watermark is None or candidate > self.watermark):
            self.watermark = candidate
        return self.watermark
