"""Every Kafka topic of the project, named in one place with its partitions and configs.

Keyed event topics share a partition count so that co-partitioned inputs and the
stages' state stores (one changelog partition per input partition) line up. State-like
topics are compacted: a consumer that starts late still reads the latest value per key.
"""

from __future__ import annotations

from dataclasses import field

from pipeline.immutable import immutable
from pipeline.settings import KafkaSettings

WEEK_MS = 7 * 24 * 3600 * 1000


@immutable
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


@immutable
class Topics:
    """Names of the project's topics under one prefix (tests use their own prefix)."""

    prefix: str = "webhouse"
    partitions: int = 4

    @property
    def raw_events(self) -> str:
        return f"{self.prefix}.events.raw"

    @property
    def enriched_events(self) -> str:
        return f"{self.prefix}.events.enriched"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}.sessions"

    @property
    def identity(self) -> str:
        return f"{self.prefix}.identity"

    @property
    def profiles(self) -> str:
        return f"{self.prefix}.profiles"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def triggers_input(self) -> str:
        return f"{self.prefix}.triggers.input"

    @property
    def erasures(self) -> str:
        return f"{self.prefix}.erasures"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.deadletter"

    @staticmethod
    def changelog(group_id: str, store: str) -> str:
        """A stage's state store: written with its outputs and offsets (``pipeline.runtime``)."""
        return f"{group_id}-{store}-changelog"

    def changelog_spec(self, group_id: str, store: str) -> TopicSpec:
        return TopicSpec(
            self.changelog(group_id, store),
            self.partitions,
            {"cleanup.policy": "compact"},
            "A stage's state, one partition per input partition.",
        )

    def specs(self) -> list[TopicSpec]:
        keep_week = {"retention.ms": str(WEEK_MS)}
        compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        p = self.partitions
        return [
            TopicSpec(self.raw_events, p, keep_week, "Validated events from the collector (Avro)."),
            TopicSpec(self.enriched_events, p, keep_week, "Events with enrichment and session id."),
            TopicSpec(self.sessions, p, keep_week, "Closed sessions."),
            TopicSpec(self.identity, p, compacted, "Identity map: anonymous id -> customer id."),
            TopicSpec(self.profiles, p, compacted, "Latest customer profile per customer id."),
            TopicSpec(self.alerts, p, keep_week, "Trigger alerts, fired and suppressed."),
            TopicSpec(
                self.triggers_input, p, keep_week, "Events, sessions and merges re-keyed by customer id."
            ),
            TopicSpec(
                self.dead_letters,
                1,
                {"retention.ms": str(4 * WEEK_MS)},
                "Anything a stage could not handle, raw, with stage and reason.",
            ),
            TopicSpec(
                self.erasures, 1, {"cleanup.policy": "compact"}, "Forgotten customers (webhouse forget)."
            ),
        ]

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> Topics:
        return cls(prefix=kafka.topic_prefix, partitions=kafka.default_partitions)
