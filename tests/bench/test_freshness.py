"""bench/freshness.py runs the whole stack for a few seconds and prints the JSON a script reads.

Figures are not checked (freshness is the benchmark's business, never a test's); only that a tiny
run completes, every acknowledged event lands (a short lateness: the quiet partitions release the
rest once the traffic stops) and each figure is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_compare import is_number

REPO = Path(__file__).resolve().parents[2]
FIGURES = ("freshness_s", "acked_to_enriched_s", "enriched_to_table_s")
STATS = ("min", "p50", "p90", "p99", "max")


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_freshness_reports_every_figure_for_a_short_run(tmp_path: Path) -> None:
    command = [
        sys.executable, str(REPO / "bench" / "freshness.py"), "--rate", "20", "--seconds", "4",
        "--lateness", "2", "--wait", "120", "--workdir", str(tmp_path / "fresh"), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=580, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["acknowledged"] == result["sent"] == 80, result
    assert (result["landed"], result["never_landed"]) == (80, 0), result
    assert is_number(result["rate_achieved"]), result
    figures = result["all"]
    assert {f: figures[f]["count"] for f in FIGURES} == dict.fromkeys(FIGURES, 80), figures
    assert all(is_number(figures[f][s]) for f in FIGURES for s in STATS), figures
    assert result["request_ms"]["count"] == 8 and all(is_number(result["request_ms"][s]) for s in STATS)
    assert result["settings"]["allowed_lateness_s"] == 2
