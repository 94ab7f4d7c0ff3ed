"""Prometheus metrics of the stream worker, on their own registry so tests can make fresh ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "webhouse_worker_events", "Raw events processed, by outcome.", ["outcome"], registry=r
        )
        self.late = Counter(
            "webhouse_worker_late_events",
            "Events later than the allowed lateness (kept, flagged).",
            registry=r,
        )
        self.dead_letters = Counter(
            "webhouse_worker_dead_letters", "Inputs sent to the dead-letter topic, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.sessions_closed = Counter(
            "webhouse_worker_sessions_closed", "Sessions closed, by the rule that closed them.", ["rule"],
            registry=r,
        )  # fmt: skip
        self.identity_links = Counter(
            "webhouse_worker_identity_links", "Identity links emitted (new or moved).", registry=r
        )
        self.identity_rejected = Counter(
            "webhouse_worker_identity_rejected",
            "Links the identity guards refused, by rule (blocklist, device_limit) and the id's field.",
            ["rule", "field"],
            registry=r,
        )
        self.open_sessions = Gauge(
            "webhouse_worker_open_devices", "Devices with an open visit or events waiting for the watermark.",
            registry=r,
        )  # fmt: skip
        self.watermark = Gauge(
            "webhouse_worker_watermark_seconds",
            "Event-time watermark, by partition.",
            ["partition"],
            registry=r,
        )
        self.latency = Histogram(
            "webhouse_worker_processing_latency_seconds",
            "Collector receipt to enriched event produced (wall clock).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
            registry=r,
        )
        self.devices_expired = Counter(
            "webhouse_worker_devices_expired",
            "Idle devices dropped from the worker's state (worker.device_ttl_s).",
            registry=r,
        )
