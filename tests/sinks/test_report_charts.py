"""The report's charts: real axes (no skipped day or month), labels that are cut only when too long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sinks.report import charts, read_figures
from tests.sinks.land import Webhouse
from tools.records import T0, event


def test_cohort_columns_run_from_zero_to_the_last_period() -> None:
    svg = charts.heatmap("r", [("2026-05", 0, 1.0), ("2026-05", 3, 0.5)])
    assert [f">+{p}<" in svg for p in range(4)] == [True] * 4


def test_bar_values_are_shown_whole() -> None:
    assert ">2,143 EUR<" in charts.hbar("t", [("silver", 2142.91)], unit=" EUR")
    assert ">12k EUR<" in charts.hbar("t", [("gold", 12_345.0)], unit=" EUR")


def test_events_per_day_shows_empty_days(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events([event("m1", at=T0), event("m2", at=T0 + timedelta(days=3)), event("m3", at=T0)])
    figures = read_figures(wh.connect())
    day = datetime(2026, 3, 2, tzinfo=UTC).date()
    assert figures.events_by_day == [(str(day + timedelta(days=d)), n) for d, n in enumerate([2, 0, 0, 1])]
    assert figures.span == ("2026-03-02", "2026-03-05")
