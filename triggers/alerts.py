"""The alert record: what a rule emits, fired or suppressed, with its deterministic id.

The id hashes the rule and the triggering ids (message ids, a session id, or the
last event id for scheduled rules) and nothing time- or run-dependent, so a replay
or a restart recomputes the same id; the state drops ids it already emitted and
sinks and webhook receivers dedupe by it too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import field, replace
from typing import Any, Literal

from pipeline.event_view import from_ms
from pipeline.immutable import immutable
from triggers.conditions import Reason

Status = Literal["fired", "suppressed"]


def alert_id(rule_id: str, triggering_ids: tuple[str, ...]) -> str:
    h = hashlib.sha256(rule_id.encode())
    for part in sorted(triggering_ids):
        h.update(b"\x00")
        h.update(part.encode())
    return h.hexdigest()[:32]


@immutable
class Alert:
    alert_id: str
    rule_id: str
    alert_type: str
    customer_id: str
    time: int  # event time (ms) the alert became due
    kind: str
    priority: str
    channel: str
    message: str
    reasons: tuple[Reason, ...]
    triggering_event_ids: tuple[str, ...]
    consent_purpose: str | None = None
    status: Status = "fired"
    suppression_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def suppressed(self, reason: str) -> Alert:
        return replace(self, status="suppressed", suppression_reason=reason)

    def to_record(self) -> dict[str, Any]:
        """The Avro record of schemas/alert.avsc."""
        return {
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "alert_type": self.alert_type,
            "customer_id": self.customer_id,
            "time": from_ms(self.time),
            "status": self.status,
            "suppression_reason": self.suppression_reason,
            "kind": self.kind,
            "consent_purpose": self.consent_purpose,
            "priority": self.priority,
            "channel": self.channel,
            "message": self.message,
            "reasons": [r.to_record() for r in self.reasons],
            "triggering_event_ids": list(self.triggering_event_ids),
            "data": {k: json.dumps(v, default=str, sort_keys=True) for k, v in self.data.items()},
        }

    def to_json(self) -> dict[str, Any]:
        """The webhook body: plain JSON, times as ISO-8601 UTC, reasons with decoded values."""
        time = from_ms(self.time)
        return {
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "alert_type": self.alert_type,
            "customer_id": self.customer_id,
            "time": time.isoformat() if time else None,
            "status": self.status,
            "suppression_reason": self.suppression_reason,
            "kind": self.kind,
            "consent_purpose": self.consent_purpose,
            "priority": self.priority,
            "channel": self.channel,
            "message": self.message,
            "reasons": [{"condition": r.condition, "actual": r.actual} for r in self.reasons],
            "triggering_event_ids": list(self.triggering_event_ids),
            "data": dict(self.data),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Alert:
        """Back from the Avro record (the delivery agent reads the alerts topic)."""
        return cls(
            alert_id=record["alert_id"],
            rule_id=record["rule_id"],
            alert_type=record["alert_type"],
            customer_id=record["customer_id"],
            time=int(record["time"].timestamp() * 1000),
            kind=record["kind"],
            priority=record["priority"],
            channel=record["channel"],
            message=record["message"],
            reasons=tuple(Reason(r["condition"], json.loads(r["actual"])) for r in record["reasons"]),
            triggering_event_ids=tuple(record["triggering_event_ids"]),
            consent_purpose=record.get("consent_purpose"),
            status=record["status"],
            suppression_reason=record.get("suppression_reason"),
            data={k: json.loads(v) for k, v in (record.get("data") or {}).items()},
        )
