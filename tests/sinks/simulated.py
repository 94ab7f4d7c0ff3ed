"""A simulated shop landed into a webhouse without Kafka: the simulator's events, the profiles and
alerts of the worker and trigger stages on the in-memory runtime (``tools.local_pipeline``) and the
identity links, for the tests that need realistic data (business-term agreement, the HTML report)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.collector.segment import map_event
from pipeline.settings import Settings, TriggerSettings
from tests.sinks.land import Webhouse
from tools.local_pipeline import LocalPipeline
from tools.records import link
from tools.simulate import SimulationConfig, generate
from triggers.profile import to_record

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 23, 12, 1, tzinfo=UTC)


@dataclass
class Landed:
    pipeline: LocalPipeline
    webhouse: Webhouse
    customers: list[str]


def land_simulation(root: Path, triggers: TriggerSettings, seed: int, customers: int, days: float) -> Landed:
    tiers = tuple((t.name, t.min_revenue, t.min_orders) for t in triggers.value_tiers)
    sim = generate(SimulationConfig(seed=seed, now=NOW, customers=customers, days=days, value_tiers=tiers))
    local = LocalPipeline(Settings(triggers=triggers), max_batch=500)
    records: list[dict[str, Any]] = []
    for ev in sim.events:
        if ev.malformed is None:
            record = map_event(ev.body, received_at=RECEIVED, source="simulator")
            records.append(record)
            local.raw(record)
    local.finish(sim.truth.now_ms)
    states = local.states()
    wh = Webhouse(root, triggers)
    wh.events(records)
    links: dict[tuple[str, str], datetime] = {}
    for r in records:
        if r.get("user_id") and r.get("anonymous_id"):
            key = (r["anonymous_id"], r["user_id"])
            links[key] = max(links.get(key, r["timestamp"]), r["timestamp"])
    wh.land("identity", [link(a, c, at) for (a, c), at in sorted(links.items())])
    ids = sorted({r["user_id"] for r in records if r.get("user_id")})
    wh.land("profiles", [to_record(states[c].profile) for c in ids if c in states])
    wh.land("alerts", [a.to_record() for a in local.alerts])
    return Landed(local, wh, ids)
