"""Prometheus metrics of the sinks: what landed, how long commits take, how far behind each table is."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    """One set per process; a registry of its own so tests can build several."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rows = Counter(
            "webhouse_sink_rows_written", "Rows committed to a table", ["table"], registry=self.registry
        )
        self.duplicates = Counter(
            "webhouse_sink_duplicates_dropped",
            "Rows dropped because their natural id was already landed",
            ["table"],
            registry=self.registry,
        )
        self.files = Counter(
            "webhouse_sink_files_written", "Parquet files committed", ["table"], registry=self.registry
        )
        self.commit_seconds = Histogram(
            "webhouse_sink_commit_seconds",
            "Dedupe + write + commit of one batch",
            ["table"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.lag = Gauge(
            "webhouse_sink_consumer_lag",
            "Messages in Kafka not yet landed in the table",
            ["table", "partition"],
            registry=self.registry,
        )
        self.fenced = Counter(
            "webhouse_sink_fenced_batches",
            "Batches a table refused because another sink had landed past this one (its rows dropped)",
            ["table"],
            registry=self.registry,
        )
        self.rebalances = Counter(
            "webhouse_sink_rebalances", "Partitions revoked or lost in a rebalance", registry=self.registry
        )
        self.dead_letters = Counter(
            "webhouse_sink_dead_letters",
            "Records the sink sent to the dead-letter topic",
            ["reason"],
            registry=self.registry,
        )
