"""Bench only: lets ``bench/worker_memory.py --trace`` take ``tracemalloc`` snapshots of a running
child process (``webhouse triggers run``) at the event counts it chooses, without a hook in the
service's own code.

A child started with this folder on ``PYTHONPATH`` and ``BENCH_TRACE_DIR=<dir>`` in its
environment watches ``<dir>/<its pid>``: a file ``start`` starts tracing (tracing from the start would slow
the whole run, and what was allocated before the first snapshot does not matter), a file
``<name>.want`` is answered by ``<name>.snapshot`` (``tracemalloc.Snapshot.dump``, written under a
temporary name and renamed, so the bench never reads half a file). Python imports ``sitecustomize``
at start-up when it is on the path; without the variable this does nothing.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = 8  # enough to tell the store, the cache and the stage apart


def _watch(folder: Path) -> None:
    while True:
        if not tracemalloc.is_tracing() and (folder / "start").exists():
            tracemalloc.start(FRAMES)
        for wanted in sorted(folder.glob("*.want")):
            if tracemalloc.is_tracing():
                partial = wanted.with_suffix(".partial")
                tracemalloc.take_snapshot().dump(str(partial))
                partial.rename(wanted.with_suffix(".snapshot"))
            wanted.unlink()
        time.sleep(0.5)


_folder = os.environ.get("BENCH_TRACE_DIR")
if _folder:
    _own = Path(_folder) / str(os.getpid())
    threading.Thread(target=_watch, args=(_own,), name="bench-trace", daemon=True).start()
