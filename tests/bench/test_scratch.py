"""bench/scratch.py: a bench sent SIGTERM stops what it started and keeps its folder for the logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BENCH = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
from scratch import scratch_dir
with scratch_dir("webhouse-test-scratch-") as tmp:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        print(tmp, child.pid, flush=True)
        child.wait()
    finally:
        child.terminate()
        child.wait(30)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_unwinds_the_bench() -> None:
    bench = subprocess.Popen(
        [sys.executable, "-c", BENCH, str(REPO / "bench")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert bench.stdout is not None
    folder, pid = bench.stdout.readline().split()
    bench.send_signal(signal.SIGTERM)
    _, err = bench.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = _alive(int(pid))
    if orphaned:
        os.kill(int(pid), signal.SIGKILL)
    kept = Path(folder).is_dir()
    if kept:
        Path(folder).rmdir()
    assert not orphaned, "the bench's child outlived it"
    assert bench.returncode == 128 + signal.SIGTERM
    assert kept and f"kept {folder}" in err
