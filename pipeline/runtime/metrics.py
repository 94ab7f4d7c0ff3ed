"""Prometheus metrics of the stream runtime, labelled by stage (worker, triggers-route, ...)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("webhouse_stage_records", "Records a stage consumed.", ["stage"], registry=r)
        self.batch_seconds = Histogram(
            "webhouse_stage_batch_seconds",
            "One batch: process, then produce outputs, state and offsets in one transaction.",
            ["stage"],
            registry=r,
        )
        self.transactions = Counter(
            "webhouse_stage_transactions",
            "Checkpoints (outputs + state + offsets), committed or aborted.",
            ["stage", "outcome"],
            registry=r,
        )
        self.rebalances = Counter(
            "webhouse_stage_rebalances", "Partitions revoked or lost, by stage.", ["stage"], registry=r
        )
        self.restore_seconds = Histogram(
            "webhouse_stage_restore_seconds",
            "Reading newly assigned partitions' state back from the changelogs.",
            ["stage"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.held_back = Gauge(
            "webhouse_stage_held_back",
            "1 while the stage reads nothing because the stages after it are more than "
            "worker.downstream_backlog_max records behind (a catch-up), else 0.",
            ["stage"],
            registry=r,
        )
        self.lag = Gauge(
            "webhouse_stage_consumer_lag",
            "Input records not yet read, by stage, topic and partition.",
            ["stage", "topic", "partition"],
            registry=r,
        )
