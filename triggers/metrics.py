"""Prometheus metrics of triggers/, on a registry the caller gives (the worker's, so one endpoint)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from triggers.alerts import Alert

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class TriggerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.alerts = Counter(
            "webhouse_trigger_alerts",
            "Alerts emitted, by rule, status (fired/suppressed) and suppression reason.",
            ["rule", "status", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "webhouse_trigger_latency_seconds",
            "Event time at which an alert became due -> alert produced (wall clock).",
            ["rule"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inputs = Counter(
            "webhouse_trigger_inputs",
            "Inputs evaluated, by kind (event, session, merge).",
            ["kind"],
            registry=r,
        )
        self.states_expired = Counter(
            "webhouse_trigger_states_expired",
            "Trigger states dropped after triggers.state_ttl_days without an event (event time).",
            registry=r,
        )
        self.dead_letters = Counter(
            "webhouse_trigger_dead_letters", "Inputs or alerts dead-lettered, by stage and reason.",
            ["stage", "reason"], registry=r,
        )  # fmt: skip
        self.reloads = Counter(
            "webhouse_trigger_rule_reloads", "Rule directory changes seen: reloaded or refused.", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.webhook_latency = Histogram(
            "webhouse_webhook_seconds", "Duration of one webhook POST attempt.", registry=r
        )
        self.webhook_failures = Counter(
            "webhouse_webhook_failures", "Failed webhook attempts by reason: timeout, connect, http_503...",
            ["reason"], registry=r,
        )  # fmt: skip
        self.watermark = Gauge(
            "webhouse_trigger_watermark_seconds",
            "Event-time watermark of each triggers partition (absence windows close behind it).",
            ["partition"],
            registry=r,
        )
        self.held = Gauge(
            "webhouse_trigger_held_inputs",
            "Inputs the evaluate stage holds for its clock: in memory, or parked in trigger-pending.",
            ["where"],
            registry=r,
        )
        # Series from the start, so dashboards and alert rules see a 0 rather than nothing.
        for reason in ("timeout", "connect"):
            self.webhook_failures.labels(reason)
        for where in ("memory", "parked"):
            self.held.labels(where)
        self.dead_letters.labels("triggers", "undecodable")
        self.webhook_delivered = Counter(
            "webhouse_webhook_delivered", "Alerts a webhook accepted.", registry=r
        )

    def alert(self, alert: Alert, produced_at_s: float) -> None:
        """Count one produced alert and observe its latency from the event time it became due."""
        self.alerts.labels(alert.rule_id, alert.status, alert.suppression_reason or "").inc()
        self.latency.labels(alert.rule_id).observe(max(0.0, produced_at_s - alert.time / 1000))
