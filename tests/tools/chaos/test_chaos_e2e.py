"""`webhouse chaos`, short: the whole stack under a few seeded kills against an undisturbed run.

The spec, exactly: no acknowledged event lost, none landed twice, every table equal to the
undisturbed run's. The tables written from the triggers' state do not hold to it yet: alerts
and profile versions follow the order in which one customer's inputs from several partitions
reach the evaluate stage (a multi-device customer's first purchase decided on another order when
one partition ran days of event time ahead of another). That test is an expected failure (not
strict) only while nothing but those two tables differs; any other table differing fails it.
Sessions must be equal: a pause no longer cuts a visit (the worker's quiet clock).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import load_settings
from tools.chaos.run import ChaosOptions, ChaosReport, run_chaos

# Two whole runs in the fixture (about 80 s); a stuck one is reported after timeout_s, not hung on.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

# Tables written from the triggers' state (see the module docstring).
STATE_TABLES = frozenset({"alerts", "profiles_history"})


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    opts = ChaosOptions(
        workdir=Path(tmp_path_factory.mktemp("chaos")), kills=4, seed=5, customers=20, days=5, rate=200,
        tail_s=8, max_pause_s=5, settle_s=6, timeout_s=100,
    )  # fmt: skip
    result = run_chaos(opts, load_settings())
    print(result.to_json())
    return result


def test_faults_were_injected(report: ChaosReport) -> None:
    assert sum(report.chaos.faults.values()) + sum(report.chaos.skipped.values()) == 4
    assert sum(report.chaos.faults.values()) >= 1
    assert report.chaos.send.accepted == report.baseline.send.accepted == len(report.expected_ids)


def test_both_runs_settled(report: ChaosReport) -> None:
    """Every stage caught up after the faults: none was left alive and stuck."""
    assert (report.baseline.unsettled, report.chaos.unsettled) == (None, None)


def test_no_acknowledged_event_is_lost_or_landed_twice(report: ChaosReport) -> None:
    assert report.lost == 0
    assert report.duplicated == 0


def test_every_table_equals_the_undisturbed_run(report: ChaosReport) -> None:
    differing = {d.table: (d.only_baseline, d.only_chaos) for d in report.differing}
    if differing and set(differing) <= STATE_TABLES:
        pytest.xfail(f"trigger-state tables differ (rows only undisturbed, only under chaos): {differing}")
    assert differing == {}


def test_against_the_ground_truth(report: ChaosReport) -> None:
    """Orders, dead letters and cart alerts as the simulator says, in both runs."""
    assert report.baseline.truth == report.chaos.truth == {
        "orders_wrong": 0, "dead_letters_wrong": 0, "cart_alerts_false": 0, "cart_alerts_missed": 0,
        "alerts_without_consent": 0,
    }  # fmt: skip
