"""bench/traced.py with its start-up hook: a child asked to trace and snapshot does, what it kept
between two snapshots is named by the line that allocated it, and malloc's figures come with each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from traced import Tracer, grew_most, traced_mib  # noqa: E402

CHILD = """
import pathlib, sys, time
kept = []
while not pathlib.Path(sys.argv[1]).exists():
    kept.append(bytearray(100_000))
    time.sleep(0.01)
"""


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.1)


def test_a_child_snapshots_when_asked_and_the_growing_line_is_named(tmp_path: Path) -> None:
    tracer = Tracer(tmp_path / "trace", start=10, points=[20, 30])
    stop = tmp_path / "stop"
    env = {**os.environ, **tracer.environ()}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(stop)], env=env)
    try:
        tracer.attach(child.pid)
        tracer.at(5)  # before the start: nothing asked
        assert not list((tmp_path / "trace" / str(child.pid)).iterdir())
        tracer.at(20)
        _wait_for(tmp_path / "trace" / str(child.pid) / "20.snapshot")
        time.sleep(1)
        tracer.at(30)
        _wait_for(tmp_path / "trace" / str(child.pid) / "30.snapshot")
    finally:
        stop.touch()
        child.wait(30)
    snaps = tracer.snapshots()
    assert [n for n, _ in snaps] == [20, 30]
    assert traced_mib(snaps[1][1]) > traced_mib(snaps[0][1])
    top = grew_most(snaps[0][1], snaps[1][1], 1)[0]
    assert top["frames"] == ["<string>:5"]
    assert cast(float, top["mib"]) > 1  # the child keeps about 10 MB a second
    figures = tracer.malloc_figures()
    assert [n for n, _ in figures] == [20, 30]
    assert figures[1][1]["malloc_in_use"] > figures[0][1]["malloc_in_use"]  # bytearrays of 100 KB: malloc's
    assert all(f["rss"] > f["malloc_in_use"] for _, f in figures)
