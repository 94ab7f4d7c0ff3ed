"""The whole house on the real broker: `webhouse demo`'s run, checked against the simulator's truth.

Collector, worker, trigger stages and sink run as the real child processes the demo starts; the simulator
sends through HTTP; every figure below is read back from the webhouse with DuckDB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.kafka_local import LocalKafka
from pipeline.settings import load_settings
from sinks.duck import connect
from tools.demo.run import DemoOptions, DemoResult, run_demo
from tools.simulate.config import Mix

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(kafka_broker: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    settings = load_settings(kafka={"bootstrap_servers": kafka_broker.bootstrap})
    # The demo's own pace (simulate.rate, 600 events/s: about four simulated days a wall second)
    # and the documented absence grace: the triggers' clock, not a slow replay, makes it exact.
    opts = DemoOptions(
        workdir=tmp_path_factory.mktemp("demo"), customers=120, days=30, rate=settings.simulate.rate,
        seed=7, append=False, settle_s=8, timeout_s=300,
        # Withdrawals are what the consent test is about: at the default rate (14% of opt-ins) 120
        # customers withdraw none on about one day in five (the traffic follows the clock).
        mix=Mix(withdraw_rate=0.6),
    )  # fmt: skip
    return run_demo(opts, settings)


def test_every_accepted_event_landed_once(demo: DemoResult) -> None:
    con = connect(demo.settings)
    total, distinct = con.execute("SELECT count(*), count(DISTINCT message_id) FROM events").fetchone() or (
        0,
        0,
    )
    assert total == distinct == demo.send.accepted
    assert demo.figures.counts["sessions"] > 0


def test_every_order_and_its_revenue(demo: DemoResult) -> None:
    con = connect(demo.settings)
    landed = {
        order_id: round(revenue, 2)
        for order_id, revenue in con.execute(
            "SELECT order_id, any_value(order_revenue) FROM orders WHERE kind = 'completed' GROUP BY order_id"
        ).fetchall()
    }
    truth = {o.order_id: o.revenue_cents / 100 for o in demo.simulation.truth.orders}
    assert truth and landed == truth
    assert demo.figures.revenue == pytest.approx(demo.simulation.truth.total_revenue, abs=0.01)


def test_malformed_events_are_dead_letters_with_their_reason(demo: DemoResult) -> None:
    con = connect(demo.settings)
    letters = dict(
        con.execute("SELECT message_id, reason FROM dead_letters WHERE stage = 'collector'").fetchall()
    )
    expected = demo.simulation.truth.malformed_message_ids
    assert expected and letters == expected


def test_cart_abandonment_alerts_are_exactly_the_ground_truths_carts(demo: DemoResult) -> None:
    """Per cart: an alert for every cart left without an order within the hour, none for the
    others, suppressed exactly when marketing consent was not held at the alert's time."""
    verdict = demo.alerts
    print(verdict.line(), "false:", verdict.false_alarms, "missed:", verdict.misses)
    assert verdict.carts > 0 and verdict.alerts >= verdict.carts
    assert verdict.false_alarms == []
    assert verdict.misses == []


def test_no_marketing_alert_without_consent_at_its_time(demo: DemoResult) -> None:
    truth = demo.simulation.truth
    assert any(e.action == "withdrawn" for e in truth.consent_events), "the simulation should withdraw some"
    assert demo.alerts.consent_violations == []


def test_report_is_self_contained_html(demo: DemoResult) -> None:
    html = Path(demo.report_path).read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert "http://" not in html and "https://" not in html  # opens offline, no CDN
    assert "Cohort retention" in html and "Not available" not in html
