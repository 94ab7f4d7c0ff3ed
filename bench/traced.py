"""``tracemalloc`` snapshots and malloc's figures of a bench's child process at chosen event
counts, and what grew between them (``bench/worker_memory.py --trace-from``).

The child runs ``bench/tracehook/sitecustomize.py`` at start-up (that folder on ``PYTHONPATH``):
tracing starts when the bench asks, so the run before it keeps its pace, and each snapshot is
dumped by the child and read here after the run.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

HOOK = Path(__file__).resolve().parent / "tracehook"


class Tracer:
    """Asks process ``pid`` to start tracing at ``start`` events done (unless not ``trace``), and for
    malloc's figures and a snapshot at each of ``points`` (event counts), from the sampler's
    thread (``at``)."""

    def __init__(self, folder: Path, start: int, points: list[int], trace: bool = True) -> None:
        self.folder, self.start, self.points, self.trace = folder, start, sorted(points), trace
        self.asked: set[int] = set()
        self.pid: int | None = None

    def environ(self) -> dict[str, str]:
        """What a child's environment needs for the hook; every child gets it, only ``attach``'s
        process is asked for anything."""
        path = os.environ.get("PYTHONPATH")
        return {"BENCH_TRACE_DIR": str(self.folder),
                "PYTHONPATH": f"{HOOK}{os.pathsep}{path}" if path else str(HOOK)}  # fmt: skip

    def attach(self, pid: int) -> None:
        self.pid = pid
        (self.folder / str(pid)).mkdir(parents=True)

    def at(self, done: int) -> None:
        if self.pid is None or done < self.start:
            return
        own = self.folder / str(self.pid)
        if self.trace:
            (own / "start").touch()
        for point in self.points:
            if done >= point and point not in self.asked:
                self.asked.add(point)
                (own / f"{point}.want").touch()

    def snapshots(self) -> list[tuple[int, tracemalloc.Snapshot]]:
        """The snapshots the child answered, by event count."""
        if self.pid is None:
            return []
        found = sorted((self.folder / str(self.pid)).glob("*.snapshot"), key=lambda p: int(p.stem))
        return [(int(p.stem), tracemalloc.Snapshot.load(str(p))) for p in found]

    def malloc_figures(self) -> list[tuple[int, dict[str, int]]]:
        """glibc's figures the child wrote at each point (bytes): ``rss``, ``malloc_in_use``,
        ``malloc_free`` (held in its arenas, not given back), ``malloc_arenas``."""
        if self.pid is None:
            return []
        found = sorted((self.folder / str(self.pid)).glob("*.malloc"), key=lambda p: int(p.stem))
        return [(int(p.stem), json.loads(p.read_text())) for p in found]


def grew_most(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot, top: int) -> list[dict[str, object]]:
    """The ``top`` allocation sites (by traceback) that grew most from ``first`` to ``last``."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "*sitecustomize.py")]
    stats = last.filter_traces(ignore).compare_to(first.filter_traces(ignore), "traceback")
    root = str(Path.cwd()) + "/"
    return [
        {
            "mib": round(stat.size_diff / 2**20, 2),
            "blocks": stat.count_diff,
            "frames": [  # the project's frames and the libraries', not the interpreter's threading
                f"{f.filename.removeprefix(root)}:{f.lineno}"
                for f in stat.traceback
                if not f.filename.endswith("threading.py")
            ],
        }
        for stat in stats[:top]
    ]


def traced_mib(snapshot: tracemalloc.Snapshot) -> float:
    return sum(s.size for s in snapshot.statistics("filename")) / 2**20
