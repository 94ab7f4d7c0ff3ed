"""Worker scaling: events/s through `webhouse worker` with 1, 2 and 4 processes on a 3-node cluster.

    .venv/bin/python bench/worker_scaling.py                               # 1, 2, 4 workers; 8 partitions
    .venv/bin/python bench/worker_scaling.py --partitions 4,8,16 --rounds 3 --json

Method: a local 3-node cluster (``pipeline.kafka_cluster``, replication 3,
``min.insync.replicas`` 2, as `webhouse kafka up --brokers 3`); per run a fresh topic prefix
with ``--partitions`` partitions, the same ``--events`` (the benches' workload: the
simulator's journeys) written to its raw topic, then N `webhouse worker` processes as
deployed (default triggers on, each with its own instance id) in one consumer group until
the group has committed every event (``harness.run_workers``). Figures per run: events/s over
the steady state (first commit -> last, so the group's joins are left out), CPU us per event
(all workers), wall time from the first start. The worker counts run in interleaved rounds,
the order rotated each round, so a noisy neighbour hurts all alike; min and median over the
rounds are reported. A worker count above the partition count is skipped (it would idle).

What it can show depends on the machine: the workers, the three brokers and this process
share its cores. On a machine with fewer free cores than workers, more workers cannot go
faster; the CPU per event then says what scaling costs. The cores and the load average at the
start are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import workload

from pipeline.kafka_cluster import LocalCluster


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def one_run(
    bootstrap: str, events: workload.Workload, partitions: int, workers: int, tmp: Path
) -> harness.Run:
    kafka = harness.fresh_topics(bootstrap, partitions)
    settings = harness.worker_settings(kafka, tmp / f"w{workers}-p{partitions}", triggers=True)
    harness.preload(bootstrap, f"{kafka.topic_prefix}.events.raw", events.messages)
    log_dir = tmp / "logs"
    log_dir.mkdir(exist_ok=True)
    done = harness.run_workers(f"workers{workers}-p{partitions}", settings, len(events.messages), log_dir,
                               workers=workers)  # fmt: skip
    return done.run


def summary(runs: list[harness.Run]) -> dict[str, float]:
    rates = [r.events_per_s for r in runs]
    cpu = [r.cpu_us_per_event for r in runs]
    return {
        "events_per_s_min": min(rates),
        "events_per_s_median": statistics.median(rates),
        "cpu_us_per_event_median": statistics.median(cpu),
        "wall_s_median": statistics.median(r.wall_s for r in runs),
        "rounds": len(runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--workers", type=_ints, default=[1, 2, 4], help="comma-separated worker counts")
    parser.add_argument("--partitions", type=_ints, default=[8], help="comma-separated partition counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object, last")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="webhouse-scaling-"))
    events = workload.load(args.events)
    machine = {"cores": os.cpu_count() or 0, "load_average_at_start": list(os.getloadavg())}
    print(f"{len(events.messages)} events; machine: {machine}; logs under {tmp}", flush=True)
    cluster = LocalCluster.ephemeral(tmp / "kafka", brokers=3)
    cluster.up()
    runs: dict[tuple[int, int], list[harness.Run]] = {}
    try:
        for round_no in range(args.rounds):
            for partitions in args.partitions:
                counts = [w for w in args.workers if w <= partitions]
                shift = round_no % len(counts)
                for workers in counts[shift:] + counts[:shift]:
                    started = time.monotonic()
                    run = one_run(cluster.bootstrap, events, partitions, workers, tmp)
                    runs.setdefault((partitions, workers), []).append(run)
                    print(f"  round {round_no + 1}: {workers} worker(s) on {partitions} partitions: "
                          f"{run.events_per_s:,.0f} events/s, {run.cpu_us_per_event:.0f} us CPU/event "
                          f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    finally:
        cluster.down()
    figures: dict[str, Any] = {"machine": machine, "events": len(events.messages), "series": []}
    print(f"{'partitions':>10} {'workers':>7} {'ev/s min':>10} {'ev/s median':>12} {'us CPU/ev':>10}")
    for (partitions, workers), of in sorted(runs.items()):
        s = summary(of)
        figures["series"].append({"partitions": partitions, "workers": workers, **s})
        rates = f"{s['events_per_s_min']:>10,.0f} {s['events_per_s_median']:>12,.0f}"
        print(f"{partitions:>10} {workers:>7} {rates} {s['cpu_us_per_event_median']:>10,.0f}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
