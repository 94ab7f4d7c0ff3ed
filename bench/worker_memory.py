"""Does a worker's memory stay flat over a long run? Its resident set sampled through the run.

    .venv/bin/python bench/worker_memory.py --events 1000000          # ~6 minutes here, with triggers
    .venv/bin/python bench/worker_memory.py --events 200000 --json
    .venv/bin/python bench/worker_memory.py --events 1000000 --cycles 10   # 10M events, ~1-2 hours

Starts its own broker on free ports (or uses --bootstrap), writes N events of the benches'
workload to a fresh raw topic, runs one `webhouse worker` (default triggers on, unless
``--no-triggers``; state on disk) until it has committed them all, and samples its resident set
(``VmRSS``), the raw events its group has committed and how far the triggers' evaluate stage is
behind its input topic every ``--every`` seconds. Prints the resident set and that lag at each
tenth of the events, the growth per 100,000 events over the second half, the peak (``VmHWM``),
and the rows of each state store at the end. With ``--triggers-apart`` the trigger stages run in a
``webhouse triggers run`` process of their own (a core and an interpreter lock of their own, so
the evaluate stage's lag and the worker stage's memory are measured apart), and each process's
resident set is sampled and printed. ``--trace-from N`` names what grows: the trigger process (the
worker without ``--triggers-apart``) starts ``tracemalloc`` at N raw events and dumps a snapshot at
each tenth after it (``bench/traced.py``); what grew most from the first snapshot to the last is
printed. Memory the interpreter does not allocate (SQLite's page cache, librdkafka's queues) is
outside those figures: the resident set less the traced total.

What may grow, by design, with the number of devices and customers seen (the workload's device
count grows with N): the customer index of signed-in devices (``processors.identity``; devices
leave it when they expire, ``worker.device_ttl_s``) and the triggers' index of when each state
is next due (``triggers.core``); what must not grow with the number of events: everything else
(decoded devices are capped by ``worker.device_cache``, states live in the state files), except
while the evaluate stage lags: the customers' inputs it holds until the other partitions'
hand-over reports come round its input topic are in memory too (``triggers.hold``), so they grow
with that lag in a catch-up, unless ``worker.downstream_backlog_max``
(``--downstream-backlog-max N``) bounds it, with the triggers in the worker or apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import harness
import workload
from scratch import scratch_dir
from traced import Tracer, grew_most, traced_mib

from pipeline.kafka_local import broker_or_ephemeral
from pipeline.settings import KafkaSettings, Settings
from pipeline.topics import Topics
from processors.worker.runner import group_id as app_id
from triggers.stages import EvaluateStage, consumer_groups

# seconds since start, raw committed, resident MiB of each process (the worker's first), evaluate lag
Sample = tuple[float, int, tuple[float, ...], int]


class Sampler:
    """A ``Sample`` every ``every`` seconds. The lag is of the evaluate stage's group on its input
    topic (``lagging``: group, topic), in offsets (transaction markers included); -1: not sampled.
    With ``log``, each sample is also appended there as it is taken (a long run that fails still
    leaves its curve)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int, every: float,
                 lagging: tuple[str, str] | None = None, log: Path | None = None,
                 tracer: Tracer | None = None) -> None:  # fmt: skip
        self.tracer = tracer
        self.bootstrap, self.group, self.topic, self.partitions = bootstrap, group, topic, partitions
        self.log = log
        self.every = every
        self.lagging = lagging
        self.samples: list[Sample] = []
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, pids: list[int]) -> None:
        if self.tracer is not None:  # the last process: the trigger stages' when apart, else the worker
            self.tracer.attach(pids[-1])
        self.thread = threading.Thread(target=self._run, args=(pids,), daemon=True)
        self.thread.start()

    def _run(self, pids: list[int]) -> None:
        progress = harness.GroupProgress(self.bootstrap, self.group)
        lag_group, lag_topic = self.lagging or ("", "")
        lag = harness.GroupProgress(self.bootstrap, lag_group) if self.lagging else None
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    resident = tuple(harness.status_mb(pid, "VmRSS") for pid in pids)
                except OSError:
                    return  # a process ended
                done = progress.committed(self.topic, self.partitions)
                behind = -1
                if lag is not None:
                    ends = lag.produced(lag_topic, self.partitions)
                    behind = ends - lag.committed(lag_topic, self.partitions)
                sample = (time.monotonic() - started, done, resident, behind)
                if self.tracer is not None:
                    self.tracer.at(done)
                self.samples.append(sample)
                if self.log is not None:  # kept even when the run ends in an error
                    with self.log.open("a") as out:
                        mib = "+".join(f"{r:.1f}" for r in resident)
                        out.write(f"{sample[0]:.0f} {done} {mib} {behind}\n")
                self.stop.wait(self.every)
        finally:
            progress.close()
            if lag is not None:
                lag.close()


def evaluate_input(settings: Settings) -> tuple[str, str]:
    """The evaluate stage's consumer group and its input topic."""
    for group, topics in consumer_groups(settings).items():
        if group.endswith(EvaluateStage.name):
            return group, topics[0]
    raise LookupError("no evaluate stage among the trigger stages")


def at_tenths(samples: list[Sample], events: int) -> list[tuple[int, tuple[float, ...], int]]:
    """The first sample at or past each tenth of the events: (events committed, resident MiB of
    each process, lag)."""
    out = []
    for tenth in range(1, 11):
        target = events * tenth // 10
        sample = next((s for s in samples if s[1] >= target), samples[-1] if samples else None)
        if sample is not None:
            out.append((sample[1], sample[2], sample[3]))
    return out


def growth_per_100k(points: list[tuple[int, tuple[float, ...], int]], process: int = 0) -> float:
    """MiB per 100,000 events between the middle and the end of the run, of one process."""
    (n0, r0, _), (n1, r1, _) = points[len(points) // 2 - 1], points[-1]
    return (r1[process] - r0[process]) / max(1, n1 - n0) * 100_000


def state_rows(data_dir: Path) -> dict[str, int]:
    """Rows of each state store in the worker's SQLite files (``pipeline.runtime.store``), summed
    over its stages' slots, at the end of the run (every raw event committed, the trigger stages
    caught up: ``harness.run_workers``): what is sized by what was seen, as the expiries leave it."""
    rows: dict[str, int] = {}
    for path in sorted(data_dir.rglob("slot-*.sqlite")):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in (t for t in tables if t.startswith("kv_")):
                (count,) = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()
                rows[table[3:]] = rows.get(table[3:], 0) + int(count)
    return rows


def report_trace(tracer: Tracer, top: int) -> dict[str, object]:
    """Prints malloc's figures and the traced total at each point, and the sites that grew most from
    the first snapshot to the last; returns the same for the JSON report."""
    mib = 2**20
    figures = tracer.malloc_figures()
    for n, f in figures:
        rss, used, free, arenas = (
            f[k] / mib for k in ("rss", "malloc_in_use", "malloc_free", "malloc_arenas")
        )
        pymalloc = (  # absent under PYTHONMALLOC=malloc
            f"; pymalloc arenas {f['pymalloc_arenas'] / mib:.0f}, live blocks in them "
            f"{f['pymalloc_in_use'] / mib:.0f}" if "pymalloc_arenas" in f else ""
        )  # fmt: skip
        print(f"  {n:>10,} events: resident {rss:.0f} MiB; malloc in use {used:.0f}, "
              f"free in its arenas {free:.0f}, arenas {arenas:.0f}{pymalloc}")  # fmt: skip
    snaps = tracer.snapshots()
    totals = [[n, round(traced_mib(snap), 1)] for n, snap in snaps]
    if totals:
        print("  traced (tracemalloc) MiB: " + ", ".join(f"{n:,} events {mib}" for n, mib in totals))
    sites = grew_most(snaps[0][1], snaps[-1][1], top) if len(snaps) > 1 else []
    if sites:
        print(f"  grew most from {snaps[0][0]:,} to {snaps[-1][0]:,} events:")
    for site in sites:
        frames = " <- ".join(reversed(site["frames"]))  # type: ignore[call-overload]
        print(f"    {site['mib']:7.2f} MiB {site['blocks']:+9,} blocks  {frames}")
    return {"malloc": figures, "traced_mib": totals, "grew_most": sites}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--cycles", type=int, default=1,
        help="run the events this many times over, each cycle later in event time, on new devices "
        "(workload.replay): --events 1000000 --cycles 10 is a 10M-event run",
    )  # fmt: skip
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--device-cache", type=int, help="worker.device_cache (default: the setting's)")
    parser.add_argument("--prefetch-kib", type=int, help="worker.prefetch_kib (default: the setting's)")
    parser.add_argument(
        "--downstream-backlog-max", type=int, help="worker.downstream_backlog_max (default: the setting's)"
    )
    parser.add_argument("--held-in-memory", type=int, help="triggers.held_in_memory (default: the setting's)")
    parser.add_argument("--no-triggers", action="store_true", help="the worker without its extensions")
    parser.add_argument(
        "--triggers-apart", action="store_true",
        help="the trigger stages in a `webhouse triggers run` process of their own",
    )  # fmt: skip
    parser.add_argument(
        "--trace-from", type=int, help="tracemalloc in the trigger process (the worker without "
        "--triggers-apart) from this many raw events on, a snapshot at each tenth after it; prints "
        "what grew from the first snapshot to the last",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=15, help="allocation sites printed with --trace-from")
    parser.add_argument(
        "--no-tracemalloc", action="store_true",
        help="with --trace-from: malloc's figures only, no tracemalloc (which slows the process)",
    )  # fmt: skip
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument(
        "--samples", type=Path, help="append each sample here as it is taken: seconds, raw events "
        "committed, resident MiB, evaluate lag",
    )  # fmt: skip
    args = parser.parse_args()
    if args.no_triggers and args.downstream_backlog_max:
        parser.error("--downstream-backlog-max bounds the worker by the trigger stages' backlog; with "
                     "--no-triggers none runs, and the worker would wait for them")  # fmt: skip

    with scratch_dir("webhouse-memory-") as tmp:
        return measure(args, tmp)


def measure(args: argparse.Namespace, tmp: Path) -> int:
    """The run, its logs and state files in ``tmp``."""
    events = workload.load(args.events)
    total = args.events * args.cycles
    print(f"{len(events.messages)} events x {args.cycles}, {events.devices * args.cycles} devices; "
          f"logs in {tmp}", flush=True)  # fmt: skip
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        kafka = harness.fresh_topics(bootstrap, args.partitions)
        settings = _settings(args, kafka, tmp)
        raw = Topics.from_settings(kafka).raw_events
        harness.preload(bootstrap, raw, events.messages)
        cycles = workload.replay(events.messages, args.cycles, first=1)
        later = threading.Thread(  # the later cycles are written while the worker runs
            target=harness.preload, args=(bootstrap, raw, cycles), daemon=True
        )
        later.start()
        lagging = None if args.no_triggers else evaluate_input(settings)
        tracer = _tracer(args, total, tmp)
        sampler = Sampler(
            bootstrap, app_id(settings), raw, args.partitions, args.every, lagging, args.samples, tracer
        )
        try:
            done = harness.run_workers(
                "worker", settings, total, tmp, timeout_s=total / 100, on_started=sampler.start,
                triggers_apart=args.triggers_apart and not args.no_triggers,
            )  # fmt: skip
        finally:
            sampler.stop.set()
    report = _report(sampler.samples, total, done.run, tracer, args.top, tmp / "worker")
    if args.json:
        print(json.dumps({"events": total, "devices": events.devices * args.cycles, **report}))
    return 0


def _settings(args: argparse.Namespace, kafka: KafkaSettings, tmp: Path) -> Settings:
    """The bench's worker settings with the options the command line chose."""
    settings = harness.worker_settings(kafka, tmp / "worker", triggers=not args.no_triggers)
    chosen = {
        "device_cache": args.device_cache,
        "prefetch_kib": args.prefetch_kib,
        "downstream_backlog_max": args.downstream_backlog_max,
    }
    worker = settings.worker.model_copy(update={k: v for k, v in chosen.items() if v is not None})
    settings = settings.model_copy(update={"worker": worker})
    if args.held_in_memory is not None:
        triggers = settings.triggers.model_copy(update={"held_in_memory": args.held_in_memory})
        settings = settings.model_copy(update={"triggers": triggers})
    return settings


def _tracer(args: argparse.Namespace, total: int, tmp: Path) -> Tracer | None:
    """With ``--trace-from``: the tracer, its environment set for the child processes."""
    if args.trace_from is None:
        return None
    tenths = [total * i // 10 for i in range(1, 11)]
    points = [n for n in tenths if n > args.trace_from]
    tracer = Tracer(tmp / "trace", args.trace_from, points, trace=not args.no_tracemalloc)
    os.environ.update(tracer.environ())
    return tracer


def _report(samples: list[Sample], total: int, run: harness.Run, tracer: Tracer | None, top: int,
            state_dir: Path) -> dict[str, Any]:  # fmt: skip
    """Prints the resident sizes at each tenth, their growth and the state left; returns them."""
    points = at_tenths(samples, total)
    names = ["worker", "triggers"][: len(points[0][1])] if points else ["worker"]
    for committed, resident, behind in points:
        lag = f", evaluate stage {behind:,} offsets behind its input" if behind >= 0 else ""
        mib = ", ".join(f"{name} {r:.0f}" for name, r in zip(names, resident, strict=True))
        print(f"  {committed:>10,} events committed: resident MiB {mib}{lag}")
    growth = [growth_per_100k(points, i) for i in range(len(names))]
    print(
        "  growth over the second half, MiB per 100,000 events: "
        + ", ".join(f"{name} {g:.1f}" for name, g in zip(names, growth, strict=True))
        + f"; peak {run.peak_rss_mb:.0f} MiB"
    )
    print(f"  {run.events_per_s:,.0f} events/s, {run.cpu_us_per_event:.0f} us CPU/event")
    grown = report_trace(tracer, top) if tracer is not None else None
    rows = state_rows(state_dir)
    print("  state rows at the end: " + ", ".join(f"{name} {n:,}" for name, n in sorted(rows.items())))
    report: dict[str, Any] = {
        "processes": names,
        "resident_mb_at_tenths": [[n, *(round(x, 1) for x in r)] for n, r, _ in points],
        "evaluate_lag_at_tenths": [[n, lag] for n, _, lag in points],
        "growth_mb_per_100k_second_half": [round(g, 2) for g in growth],
        "peak_rss_mb": run.peak_rss_mb,
        "events_per_s": run.events_per_s,
        "state_rows": rows,
    }
    if grown is not None:
        report["traced"] = grown
    return report


if __name__ == "__main__":
    sys.exit(main())
