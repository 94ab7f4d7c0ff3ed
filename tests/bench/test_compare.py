"""bench/compare.py runs end to end and prints the JSON a script reads: the keys, as numbers.

Figures are not checked (speed is the benchmark's business, never a test's); only that one
tiny run of every contender completes on the test broker and reports each figure.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = (
    "stream_vs_floor", "stream_vs_quixstreams", "collector_eps", "collector_p99_ms", "sink_rows_per_s",
    "sink_from_kafka_rows_per_s", "sink_from_kafka_cpu_us_per_event",
)  # fmt: skip


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.timeout(1200)  # the first run also makes the quixstreams virtualenv
def test_compare_prints_every_goal_figure_as_a_number(kafka_bootstrap: str) -> None:
    command = [
        sys.executable, str(REPO / "bench" / "compare.py"), "--events", "2000", "--rounds", "1", "--json",
        "--bootstrap", kafka_bootstrap, "--collector-batches", "20", "--clients", "2",
        "--sink-rows", "4000", "--sink-batch", "2000",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1150, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["quixstreams_skipped"] is None, result["quixstreams_skipped"]
    assert {key: is_number(result.get(key)) for key in KEYS} == dict.fromkeys(KEYS, True), result
    for contender in ("floor", "quixstreams", "worker", "worker-bare"):
        figures = result["stream"][contender]
        assert all(is_number(figures[k]) for k in ("events_per_s_median", "cpu_us_per_event_median")), figures


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_the_runtime_floor_passes_every_event_through_each_hop(kafka_bootstrap: str) -> None:
    """``runtime-1hop`` and ``runtime-3hops`` (bench/runtime_floor.py): the worker's transactional
    hops with no logic read every event to the last hop, and the ratio to the floor is reported."""
    command = [
        sys.executable, str(REPO / "bench" / "compare.py"), "--events", "2000", "--rounds", "1", "--json",
        "--bootstrap", kafka_bootstrap, "--contenders", "floor,runtime-1hop,runtime-3hops",
        "--no-collector", "--no-sink", "--no-warmup",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=550, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert is_number(result["runtime_vs_floor"]) and is_number(result["runtime_vs_floor_cpu"]), result
    for contender in ("runtime-1hop", "runtime-3hops"):
        [run] = result["stream_runs"][contender]
        assert run["events"] == 2000, run
        assert is_number(run["events_per_s"]) and is_number(run["cpu_us_per_event"]), run
