"""What both chaos CI tests (one broker, and the scaled-out cluster) hold a report to, in one place:
every table equal to the undisturbed run's, and both runs exact against the ground truth."""

from __future__ import annotations

from tools.chaos.run import ChaosReport

EXACT_TRUTH = {
    "orders_wrong": 0, "dead_letters_wrong": 0, "cart_alerts_false": 0, "cart_alerts_missed": 0,
    "alerts_without_consent": 0,
}  # fmt: skip


def assert_every_table_equal(report: ChaosReport) -> None:
    differing = {d.table: (d.only_baseline, d.only_chaos) for d in report.differing}
    replay = f"seed {report.options.seed}, now {report.now:%Y-%m-%dT%H:%M:%SZ}"
    assert differing == {}, (
        f"tables differing: {sorted(differing)} ({replay}); rows in one run only: {differing}"
    )


def assert_ground_truth(report: ChaosReport) -> None:
    assert report.baseline.truth == report.chaos.truth == EXACT_TRUTH
