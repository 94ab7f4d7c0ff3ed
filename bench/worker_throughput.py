"""Stream worker throughput: pre-load the raw topic with N realistic events, time the worker.

    .venv/bin/python bench/worker_throughput.py --events 100000
    .venv/bin/python bench/worker_throughput.py --events 1000000 --workers 2

Starts its own broker on free ports (or uses --bootstrap), writes N events of the benches'
workload (``workload``: the simulator's journeys, thousands of distinct user agents) to a
fresh raw topic, then runs `webhouse worker` as child process(es) and reports:

- events/s and CPU per event over the steady state (first commit -> last), and wall time
  from start including faust start-up;
- peak RSS of the worker processes (VmHWM);
- the same events through ``WorkerCore`` in this process without Kafka, split into
  decode / enrich / full core, to show where a worker's CPU time goes.

compare.py runs the same worker (``harness.run_workers``) against its floor and quixstreams.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import harness
import workload
from scratch import scratch_dir

from pipeline.kafka_local import broker_or_ephemeral
from pipeline.settings import Settings, WorkerSettings
from processors.enrichment import Enricher
from processors.worker.core import Incoming, WorkerCore


def in_process_breakdown(settings: Settings, values: list[bytes], limit: int = 50_000) -> None:
    values = values[:limit]
    core = WorkerCore(settings)
    serde = core.codec
    t = time.perf_counter()
    records = [serde.decode(v) for v in values]
    decode_s = time.perf_counter() - t
    enricher = Enricher()
    t = time.perf_counter()
    for r in records:
        enricher.enrich(r)
    enrich_s = time.perf_counter() - t
    t = time.perf_counter()
    now = datetime.now(UTC)
    for start in range(0, len(values), 2000):
        batch = [Incoming("raw", 0, start + i, None, v) for i, v in enumerate(values[start : start + 2000])]
        core.process(batch, now)
    core.sweep([0])
    core_s = time.perf_counter() - t
    n = len(values)
    print(f"in-process, {n} events, one core, no Kafka:")
    print(f"  decode only         {n / decode_s:10.0f} ev/s  ({decode_s / n * 1e6:5.1f} us/event)")
    print(f"  enrich only         {n / enrich_s:10.0f} ev/s  ({enrich_s / n * 1e6:5.1f} us/event)")
    print(f"  WorkerCore.process  {n / core_s:10.0f} ev/s  ({core_s / n * 1e6:5.1f} us/event, everything)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--within", type=float, default=WorkerSettings().batch_within_s)
    parser.add_argument("--no-triggers", action="store_true", help="run the worker without its extensions")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--debug", action="store_true", help="worker logs per-batch timings")
    args = parser.parse_args()

    with scratch_dir("webhouse-bench-") as tmp:
        return measure(args, tmp)


def measure(args: argparse.Namespace, tmp: Path) -> int:
    """The run, its logs in ``tmp``."""
    print(f"loading {args.events} events ...", flush=True)
    events = workload.load(args.events)
    print(
        f"  {len(events.messages)} events, {events.mean_bytes:.0f} bytes each on average, "
        f"{events.devices} devices, {events.user_agents} user agents, {events.pages} pages"
    )
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        kafka = harness.fresh_topics(bootstrap, args.partitions)
        settings = harness.worker_settings(
            kafka,
            tmp / "worker",
            triggers=not args.no_triggers,
            batch=args.batch,
            within=args.within,
            debug=args.debug,
        )
        harness.preload(bootstrap, f"{kafka.topic_prefix}.events.raw", events.messages)
        done = harness.run_workers("worker", settings, args.events, tmp, workers=args.workers)
    run = done.run
    print(f"worker(s)={args.workers} partitions={args.partitions} batch={args.batch}:")
    print(
        f"  {args.events} raw events processed (committed) in {run.wall_s:.1f} s from start "
        f"(incl. faust start-up); {done.enriched} enriched events out"
    )
    print(f"  steady state: {run.events_per_s:,.0f} events/s, {run.cpu_us_per_event:.0f} us CPU/event")
    print(f"  worker logs: {tmp}")
    print(f"  peak RSS per worker: {run.peak_rss_mb:.0f} MiB")
    in_process_breakdown(settings, [v for _, v in events.messages])
    return 0


if __name__ == "__main__":
    sys.exit(main())
