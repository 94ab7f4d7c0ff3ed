"""Prometheus metrics of the collector, on a registry of their own.

A registry per collector lets tests run several collectors in one process; the
``webhouse collector`` command passes prometheus_client's global registry so the
process and platform collectors are exported next to these. Under ``--processes N``
(``pipeline.collector.processes``) each process counts into prometheus_client's
multiprocess files instead, and ``exposition`` sums all the processes' counts.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from pipeline.immutable import immutable

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when first imported


@immutable
class CollectorMetrics:
    registry: CollectorRegistry
    events_accepted: Counter
    events_rejected: Counter
    requests_rejected: Counter
    dead_letters: Counter
    produce_seconds: Histogram
    in_flight: Gauge
    unexpected_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> CollectorMetrics:
        registry = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=registry,
            events_accepted=Counter(
                "webhouse_collector_events_accepted",
                "Events acknowledged by the broker on the raw topic.",
                ["source", "type"],
                registry=registry,
            ),
            events_rejected=Counter(
                "webhouse_collector_events_rejected",
                "Events that failed validation, by reason.",
                ["reason"],
                registry=registry,
            ),
            requests_rejected=Counter(
                "webhouse_collector_requests_rejected",
                "Whole requests answered 4xx/5xx, by reason (bad JSON, auth, size, Kafka down...).",
                ["reason"],
                registry=registry,
            ),
            dead_letters=Counter(
                "webhouse_collector_dead_letters",
                "Dead letters acknowledged by the broker, by reason.",
                ["reason"],
                registry=registry,
            ),
            produce_seconds=Histogram(
                "webhouse_collector_produce_seconds",
                "Time from produce to the broker's acknowledgement of all messages of a request.",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            in_flight=Gauge(
                "webhouse_collector_requests_in_flight",
                "Requests being handled right now.",
                registry=registry,
                multiprocess_mode="livesum",  # several processes: the sum over those alive
            ),
            unexpected_errors=Counter(
                "webhouse_collector_unexpected_errors",
                "Exceptions no check meant to raise, turned into a 400 (request) or a refused event.",
                ["stage"],
                registry=registry,
            ),
        )

    def exposition(self) -> bytes:
        """The text /metrics serves: this registry's metrics, or, when the processes count into
        multiprocess files, every process's, summed (whichever process is asked)."""
        directory = os.environ.get(MULTIPROCESS_DIR_ENV)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # per scrape, holding nothing but the files' sum
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
