"""Deliberately broken events, so the dead-letter path is exercised on every run.

Each kind is named after the reason code the collector gives it (``pipeline/collector/
segment.py``), so a check can match dead letters to what was sent. Apart from its one defect
a malformed event looks like a normal one, with its own message id.
"""

from __future__ import annotations

import random
from typing import Any

from tools.simulate.agents import WEB_LIBRARY, new_uuid
from tools.simulate.config import SimulationConfig
from tools.simulate.messages import SimEvent, iso, to_ms

KINDS = ("missing_id", "invalid_timestamp", "invalid_field", "invalid_type", "missing_event_name")
_BAD_TIMES = ("2026-13-45T25:61:00Z", "yesterday at noon", "31/12/2026 23:59")


def simulate_malformed(config: SimulationConfig) -> list[SimEvent]:
    rng = random.Random(f"{config.run_key}:malformed")
    start_ms, now_ms = to_ms(config.start), to_ms(config.now)
    events = []
    for i in range(config.malformed):
        kind = KINDS[i % len(KINDS)]
        ts = rng.randrange(start_ms, now_ms)
        body: dict[str, Any] = {
            "type": "track",
            "messageId": new_uuid(rng),
            "timestamp": iso(ts),
            "anonymousId": new_uuid(rng),
            "event": "Product Viewed",
            "channel": "web",
            "context": {"library": WEB_LIBRARY, "ip": f"203.0.113.{rng.randrange(1, 255)}"},
            "properties": {"product_id": f"P{rng.randrange(1, 200):04d}"},
        }
        if kind == "missing_id":
            del body["anonymousId"]
        elif kind == "invalid_timestamp":
            body["timestamp"] = _BAD_TIMES[i % len(_BAD_TIMES)]
        elif kind == "invalid_field":
            if i % 2:
                body["properties"] = ["not", "an", "object"]
            else:
                body["event"] = "Order Completed"
                body["properties"] = {"order_id": f"bad-{i}", "revenue": "twelve euros"}
        elif kind == "invalid_type":
            body["type"] = "teleport"
        else:
            body["event"] = "   "
        events.append(SimEvent(ts, f"m{i:04d}", 0, "web", "malformed", body, malformed=kind))
    return events
