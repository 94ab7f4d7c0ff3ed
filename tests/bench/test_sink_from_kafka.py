"""bench/sink_from_kafka.py lands the worker's enriched events from the test broker and prints its table.

Figures are not checked (speed is the benchmark's business); only that a tiny run lands, with the
dedupe on and off, every row the enriched events make.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_the_sink_from_kafka_lands_every_row_with_the_dedupe_on_and_off(kafka_bootstrap: str) -> None:
    command = [
        sys.executable, str(REPO / "bench" / "sink_from_kafka.py"),
        "--events", "2000", "--rounds", "1", "--bootstrap", kafka_bootstrap,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=550, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    landed = [line for line in done.stderr.splitlines() if line.startswith("  round 1:")]
    assert len(landed) == 2, done.stderr[-3000:]
    rows = {line.split("(")[-1] for line in landed}
    assert len(rows) == 1 and rows != {"0 rows)"}, landed  # the same rows both ways, and some
    table = done.stdout.splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["dedupe on", "dedupe off"], table
