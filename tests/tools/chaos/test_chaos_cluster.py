"""`webhouse chaos --brokers 3 --workers 2 --sinks 2`, short: the scaled-out stack under seeded kills.

A 3-node cluster, two worker processes and two sink processes sharing their consumer groups;
seed 12 kills a worker, a broker node and a sink (the plan is checked below, so a change of the
schedule cannot quietly leave one out). The spec is the single-broker one (``spec.py``: every
table equal, the ground truth met). And partitions must have moved: rebalances > 0. A fixed
'now' makes the traffic the same on every run, so a failure replays with the same seed and now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.settings import load_settings
from tests.tools.chaos.spec import assert_every_table_equal, assert_ground_truth
from tools.chaos.run import ChaosOptions, ChaosReport, run_chaos

# Two runs, each on a cluster of its own (about 3 minutes on a loaded 2-core machine).
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

KILLS = 3


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    opts = ChaosOptions(
        workdir=Path(tmp_path_factory.mktemp("chaos-cluster")), kills=KILLS, seed=12, customers=20, days=5,
        rate=60, tail_s=8, max_pause_s=5, settle_s=6, timeout_s=150, brokers=3, workers=2, sinks=2,
        now=datetime(2026, 11, 25, 12, tzinfo=UTC),
    )  # fmt: skip
    result = run_chaos(opts, load_settings())
    print(result.to_json())
    return result


def test_a_worker_a_broker_node_and_a_sink_were_killed(report: ChaosReport) -> None:
    assert sorted(f.label.split("-")[0] for f in report.faults) == ["broker_kill", "sink", "worker"]
    assert sum(report.chaos.faults.values()) + sum(report.chaos.skipped.values()) == KILLS
    assert report.chaos.send.accepted == report.baseline.send.accepted == len(report.expected_ids)


def test_both_runs_settled(report: ChaosReport) -> None:
    assert (report.baseline.unsettled, report.chaos.unsettled) == (None, None)


def test_partitions_moved(report: ChaosReport) -> None:
    assert sum(report.chaos.rebalances.values()) > 0


def test_no_acknowledged_event_is_lost_or_landed_twice(report: ChaosReport) -> None:
    assert report.lost == 0
    assert report.duplicated == 0


def test_every_table_equals_the_undisturbed_run(report: ChaosReport) -> None:
    assert_every_table_equal(report)


def test_against_the_ground_truth(report: ChaosReport) -> None:
    assert_ground_truth(report)
