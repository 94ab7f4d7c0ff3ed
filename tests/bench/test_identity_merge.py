"""bench/identity_merge.py completes a tiny run and prints the figures of both ways (never checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.test_compare import is_number

REPO = Path(__file__).resolve().parents[2]


def test_identity_merge_reports_both_ways() -> None:
    script = str(REPO / "bench" / "identity_merge.py")
    command = [
        sys.executable,
        script,
        "--links",
        "2000",
        "--updates",
        "50",
        "--new",
        "5",
        "--rounds",
        "2",
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for way in ("merge", "append"):
        assert all(
            is_number(result[way][k]) for k in ("seconds_min", "seconds_median", "bytes_written_median")
        )
