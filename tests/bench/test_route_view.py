"""bench/route_view.py completes a tiny run and prints its table (the figures are never checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_route_view_prints_the_three_alternatives_and_the_saving() -> None:
    command = [sys.executable, str(REPO / "bench" / "route_view.py"), "--events", "300", "--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    for row in ("| route, headers |", "| route, decoding |", "| worker, headers |", "| saved"):
        assert row in done.stdout
