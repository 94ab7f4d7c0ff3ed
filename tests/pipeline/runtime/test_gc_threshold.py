"""The stage processes collect young garbage every ``worker.gc_threshold`` allocations (net of
frees), not Python's default 700 (docs/performance.md, "Python's garbage collector")."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from pipeline.runtime.host import collect_young_garbage_every, run_stages
from pipeline.settings import WorkerSettings


@pytest.fixture(autouse=True)
def python_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_young_threshold_changes_and_the_older_ones_stay() -> None:
    gc.set_threshold(700, 10, 10)
    collect_young_garbage_every(10_000)
    assert gc.get_threshold() == (10_000, 10, 10)


def test_zero_leaves_python_s_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    collect_young_garbage_every(0)
    assert gc.get_threshold() == (700, 10, 10)


def test_run_stages_applies_the_setting() -> None:
    gc.set_threshold(700, 10, 10)
    stop = threading.Event()
    stop.set()
    codes: list[int] = []
    threshold = WorkerSettings().gc_threshold
    # Off the main thread: run_stages sets no signal handlers there (they would outlive the test).
    thread = threading.Thread(target=lambda: codes.append(run_stages([], 1.0, stop, gc_threshold=threshold)))
    thread.start()
    thread.join(30)
    assert codes == [0]
    assert gc.get_threshold() == (10_000, 10, 10)
