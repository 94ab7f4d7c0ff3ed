"""One definition per business term: profiles, the VIP trigger and the webhouse's reports agree.

The same simulated customers go through the trigger engine (profiles, `vip_tier_reached`
alerts; the worker and trigger stages on the in-memory runtime, ``tools.local_pipeline``) and
into the webhouse (events, identity links and the profiles the engine published). Every customer's value tier,
order count and last order then read the same everywhere; the terms themselves are pinned
in ``pipeline.business``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from pipeline import business
from pipeline.settings import TriggerSettings, ValueTierSettings
from tests.sinks.land import Webhouse
from tests.sinks.simulated import land_simulation
from tools.local_pipeline import LocalPipeline
from triggers.alerts import Alert
from triggers.profile import Profile

# Low thresholds, so a small simulation has customers in every tier.
TIERS = [
    ValueTierSettings(name="silver", min_revenue=150.0, min_orders=2),
    ValueTierSettings(name="gold", min_revenue=400.0, min_orders=4),
    ValueTierSettings(name="vip", min_revenue=900.0, min_orders=8),
]


def test_rfm_grid_names_every_cell_once() -> None:
    cells = {(r, f): business.rfm_segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert len(cells) == 25
    assert cells[(1, 1)] == "hibernating"  # a one-time buyer long ago
    assert cells[(5, 5)] == "champions" and cells[(5, 1)] == "new" and cells[(1, 5)] == "cannot_lose"


def test_active_means_activity_within_the_days() -> None:
    day = business.DAY_MS
    assert business.is_active(10 * day, 99 * day, 90)
    assert not business.is_active(9 * day, 99 * day, 90)
    assert not business.is_active(None, 99 * day, 90)


@pytest.fixture(scope="module")
def agreed(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalPipeline, Webhouse, list[str]]:
    triggers = TriggerSettings(value_tiers=TIERS)
    landed = land_simulation(tmp_path_factory.mktemp("agree"), triggers, seed=11, customers=200, days=30)
    return landed.pipeline, landed.webhouse, landed.customers


def _profiles(pipeline: LocalPipeline, customers: list[str]) -> dict[str, Profile]:
    states = pipeline.states()
    return {c: states[c].profile for c in customers if c in states}


@pytest.mark.slow
def test_value_tiers_agree_across_profiles_reports_and_alerts(
    agreed: tuple[LocalPipeline, Webhouse, list[str]],
) -> None:
    pipeline, wh, customers = agreed
    con = wh.connect()
    profiles = _profiles(pipeline, customers)
    from_engine = {c: p.value_tier or business.NO_TIER for c, p in profiles.items() if p.orders}
    report = dict(con.sql("SELECT customer_id, tier FROM customer_value WHERE orders > 0").fetchall())
    landed = dict(
        con.sql("SELECT customer_id, coalesce(value_tier, 'none') FROM profiles WHERE orders > 0").fetchall()
    )
    assert report == from_engine == landed
    tiers = Counter(report.values())
    assert all(tiers[t.name] for t in TIERS), tiers  # every tier reached by someone
    # VIP: the report's count, the profiles' count and the customers the VIP alert named.
    vip = business.vip_tier(TIERS)
    alerted = {a.customer_id for a in pipeline.alerts if _is_vip_alert(a, vip) and a.customer_id in profiles}
    by_tier = dict(con.sql("SELECT tier, customers FROM value_tiers").fetchall())
    assert by_tier[vip] == tiers[vip] == len(alerted)
    assert alerted == {c for c, t in report.items() if t == vip}


def _is_vip_alert(alert: Alert, vip: str) -> bool:
    return alert.rule_id == "vip_tier_reached" and alert.data.get("value_tier") == vip


@pytest.mark.slow
def test_rfm_parts_agree_with_the_profiles(agreed: tuple[LocalPipeline, Webhouse, list[str]]) -> None:
    pipeline, wh, customers = agreed
    con = wh.connect()
    profiles = _profiles(pipeline, customers)
    rfm = {
        c: (f, t) for c, f, t in con.sql("SELECT customer_id, frequency, last_order_at FROM rfm").fetchall()
    }
    expected = {
        c: (p.orders, datetime.fromtimestamp(p.last_order_at / 1000, UTC))
        for c, p in profiles.items()
        if p.orders and p.last_order_at is not None
    }
    assert rfm == expected
    segments = dict(con.sql("SELECT customer_id, segment FROM rfm").fetchall())
    cells = con.sql("SELECT customer_id, r_score, f_score FROM rfm").fetchall()
    assert {c: business.rfm_segment(r, f) for c, r, f in cells} == segments
