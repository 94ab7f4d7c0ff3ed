"""The demo's HTML report: the webhouse's own report (``sinks.report``) plus one section the
demo alone can write, the webhouse's figures next to the simulator's ground truth."""

from __future__ import annotations

from pathlib import Path

from sinks.report import Figures, write_html
from sinks.report.html import table
from tools.simulate.truth import GroundTruth


def truth_section(fig: Figures, truth: GroundTruth) -> str:
    c = fig.counts
    rows = [
        ("orders", len(truth.orders), fig.orders),
        ("revenue EUR", f"{truth.total_revenue:,.2f}", f"{fig.revenue:,.2f}"),
        ("signed-up customers", len(truth.customers), c["customers"]),
        ("malformed events / dead letters", sum(truth.malformed_by_kind.values()), c["dead_letters"]),
    ]
    return (
        '<h2 style="margin-top:18px">Webhouse against the simulator\'s ground truth</h2>'
        f'<p class="muted">Simulator seed {truth.seed}, {truth.customers_simulated:,} simulated people.</p>'
        + table(["figure", "simulator", "webhouse"], rows)
    )


def write_report(fig: Figures, truth: GroundTruth, path: Path) -> Path:
    return write_html(fig, path, title="webhouse demo report", extra=truth_section(fig, truth))
