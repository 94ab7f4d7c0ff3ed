"""bench/memory_growth.py completes a tiny run and names allocation sites (figures never checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_memory_growth_prints_four_points_and_the_sites_that_grew() -> None:
    command = [
        sys.executable,
        str(REPO / "bench" / "memory_growth.py"),
        "--events",
        "400",
        "--top",
        "3",
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert [n for n, _ in report["traced_mib"]] == [100, 200, 300, 400]
    assert len(report["grew_most"]) == 3 and all(site["frames"] for site in report["grew_most"])
