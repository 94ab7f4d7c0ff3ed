"""A service process that dies of a signal leaves the Python stacks of its threads in its log."""

from __future__ import annotations

import subprocess
import sys

CRASH = """
import ctypes, threading, time
from tools.cli import enable_crash_traces

def idle_sink_thread():
    time.sleep(30)

enable_crash_traces()
threading.Thread(target=idle_sink_thread, daemon=True).start()
time.sleep(0.2)
ctypes.string_at(0)  # what a fault in a native library looks like from Python
"""


def test_a_segfault_prints_every_threads_stack() -> None:
    done = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=60)
    assert done.returncode == -11
    assert "Fatal Python error: Segmentation fault" in done.stderr
    assert "idle_sink_thread" in done.stderr  # the other threads too, not only the one that faulted
