"""Bench only: lets ``bench/worker_memory.py --trace-from`` look into a running child process
(``webhouse triggers run``) at the event counts it chooses, without a hook in the service's own code.

A child started with this folder on ``PYTHONPATH`` and ``BENCH_TRACE_DIR=<dir>`` in its
environment watches ``<dir>/<its pid>``: a file ``start`` starts ``tracemalloc`` (tracing from the
start would slow the whole run, and what was allocated before the first snapshot does not
matter); a file ``<name>.want`` is answered by ``<name>.malloc`` (glibc's ``mallinfo2``: what
malloc has handed out and what it holds free, across its arenas, and the resident set; and
Python's own allocator for small objects, pymalloc: the arenas it holds and the bytes of live
blocks in them, from ``_PyObject_DebugMallocStats``; absent under ``PYTHONMALLOC=malloc``) and, when
tracing, ``<name>.snapshot`` (``tracemalloc.Snapshot.dump``). Each is written under a temporary
name and renamed, so the bench never reads half a file. Python imports ``sitecustomize`` at
start-up when it is on the path; without the variable this does nothing.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

FRAMES = 8  # enough to tell the store, the cache and the stage apart


_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
              "keepcost")  # fmt: skip


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


def _malloc_figures() -> dict[str, int]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    status = Path("/proc/self/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {
        "rss": rss_kib * 1024,
        "malloc_in_use": info.uordblks + info.hblkhd,  # small and large blocks handed out
        "malloc_free": info.fordblks,  # free in the arenas, not given back to the system
        "malloc_arenas": info.arena,
    }


def _pymalloc_figures(scratch: Path) -> dict[str, int]:
    """pymalloc's arenas and the live blocks in them (bytes), parsed from its statistics report, which
    it writes to a C ``FILE`` only (called with the GIL held, as ``ctypes.pythonapi`` does)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    report = ctypes.pythonapi._PyObject_DebugMallocStats
    report.argtypes = [ctypes.c_void_p]
    out = libc.fopen(str(scratch).encode(), b"w")
    try:
        report(out)
    finally:
        libc.fclose(out)
    figures: dict[str, int] = {}
    for line in scratch.read_text().splitlines():
        label, _, value = (part.strip() for part in line.partition("="))
        if label.endswith("bytes/arena"):  # "<n> arenas * <size> bytes/arena = <total>"
            figures["pymalloc_arenas"] = int(value.replace(",", ""))
        elif label == "# bytes in allocated blocks":
            figures["pymalloc_in_use"] = int(value.replace(",", ""))
    scratch.unlink()
    return figures


def _renamed_into(path: Path, write: Callable[[Path], object]) -> None:
    unfinished = path.with_suffix(".partial")
    write(unfinished)
    unfinished.rename(path)


def _dump(snapshot: tracemalloc.Snapshot, path: Path) -> None:
    snapshot.dump(str(path))


def _watch(folder: Path) -> None:
    while True:
        if not tracemalloc.is_tracing() and (folder / "start").exists():
            tracemalloc.start(FRAMES)
        for wanted in sorted(folder.glob("*.want")):
            text = json.dumps(_malloc_figures() | _pymalloc_figures(wanted.with_suffix(".pymalloc")))
            _renamed_into(wanted.with_suffix(".malloc"), partial(Path.write_text, data=text))
            if tracemalloc.is_tracing():
                snapshot = tracemalloc.take_snapshot()
                _renamed_into(wanted.with_suffix(".snapshot"), partial(_dump, snapshot))
            wanted.unlink()
        time.sleep(0.5)


_folder = os.environ.get("BENCH_TRACE_DIR")
if _folder:
    _own = Path(_folder) / str(os.getpid())
    threading.Thread(target=_watch, args=(_own,), name="bench-trace", daemon=True).start()
