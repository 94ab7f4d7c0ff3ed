"""What both chaos CI tests (one broker, and the scaled-out cluster) hold a report to, in one place.

Every table must equal the undisturbed run's, with one known exception for now: the tables written
from the triggers' state (``STATE_TABLES``) follow the order in which one customer's inputs reach
the evaluate stage; a closed session and the events of the same customer travel on different
topics, so that order differs from run to run (issue 14). While only those differ, the table test
is an expected failure (not strict); any other table differing fails it.
"""

from __future__ import annotations

import pytest

from tools.chaos.run import ChaosReport

STATE_TABLES = frozenset({"alerts", "profiles_history"})
EXACT_TRUTH = {
    "orders_wrong": 0, "dead_letters_wrong": 0, "cart_alerts_false": 0, "cart_alerts_missed": 0,
    "alerts_without_consent": 0,
}  # fmt: skip


def assert_every_table_equal(report: ChaosReport) -> None:
    differing = {d.table: (d.only_baseline, d.only_chaos) for d in report.differing}
    if differing and set(differing) <= STATE_TABLES:
        pytest.xfail(f"trigger-state tables differ (rows only undisturbed, only under chaos): {differing}")
    assert differing == {}


def assert_ground_truth(report: ChaosReport) -> None:
    assert report.baseline.truth == report.chaos.truth == EXACT_TRUTH
