"""Side by side on one broker: the webhouse stream path, its floor and quixstreams; the collector and
the sink against theirs. The instrument of issue 11's goals (ratios, so that a noisy machine
does not decide).

    .venv/bin/python bench/compare.py                        # quick: ~2 minutes
    .venv/bin/python bench/compare.py --events 100000 --rounds 3 --json

Method:

1. The events are made once (``workload``: the simulator's journeys, thousands of distinct
   user agents, devices and pages; cached under .webhouse/bench/) and every run reads the
   same bytes, written to a fresh topic prefix per run (the worker's outputs, changelogs and
   consumer group must start empty).
2. Stream contenders, each a child process consuming the raw topic from the start:
   ``floor`` (confluent-kafka consumer + fastavro decode, nothing else: floor_consumer.py),
   ``quixstreams`` (session_window(30 min).count() in its own virtualenv under
   .webhouse/bench/, made here: quix_job.py), ``worker`` (`webhouse worker` as deployed,
   default triggers on) and ``worker-bare`` (no extensions); on request (``--contenders``)
   ``worker-memory`` (state stores in memory), ``worker-apart`` (the worker without its
   triggers plus ``webhouse triggers run``: two processes, CPU summed, peak RSS the larger one)
   ``floor-cavro`` (the floor decoding with cavro, as the worker's serde does),
   ``worker-pygc`` (the worker at Python's default garbage-collection threshold), and
   ``runtime-1hop`` and ``runtime-3hops`` (the worker's transactional hops passing every event
   on with no logic: what the deployed chain costs before its logic; runtime_floor.py).
   They run in interleaved rounds,
   the order rotated each round, so a noisy neighbour hurts all alike. One uncounted run of the
   floor comes first (``--no-warmup``: none), so the fresh broker's start is in no round.
3. Collector: the real collector and a bare aiohttp handler (the floor) under the same
   Segment batches from client processes, alternated per round (collector_throughput.py).
4. Sink: the events table's rows landed in Delta with the natural-id dedupe on and off
   (sink_throughput.py), without Kafka (the goal's figure); and the whole ``webhouse sink``
   from a topic, dedupe on: the worker's enriched events of the same raw events consumed,
   decoded and landed into every table they feed (sink_from_kafka.py).

Per contender: events/s and CPU us/event over the steady state, the cores it kept busy
meanwhile (CPU s / wall s), peak RSS; min and median over the rounds. Ratios are taken within
each round (contenders of one round ran minutes apart) and their median reported:
``stream_vs_floor`` and ``stream_vs_quixstreams`` by events/s (the goal's terms), and the
``*_cpu`` ones by events per CPU second, which a busy shared machine distorts less.
``--json`` prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import collector_throughput
import harness
import sink_from_kafka
import sink_throughput
import workload
from scratch import scratch_dir

from pipeline.kafka_local import broker_or_ephemeral
from pipeline.settings import REPO_ROOT
from pipeline.topics import Topics

BENCH = Path(__file__).resolve().parent
QUIX_VENV = REPO_ROOT / ".webhouse" / "bench" / "quix-venv"
QUIX_REQUIREMENT = "quixstreams>=3.28,<4"
STREAM = ("floor", "quixstreams", "worker", "worker-bare")
# On request: the worker with its state in memory (the disk store's cost); the worker without its
# trigger stages plus `webhouse triggers run` running them, two processes (what a second core gives);
# the floor decoding with cavro, as the worker does (the stricter yardstick); the worker with
# Python's own garbage-collection threshold (worker.gc_threshold 0), what it ran with before; the
# runtime's floor (bench/runtime_floor.py): the worker's transactional hops passing events on with
# no logic, one hop or the three of the deployed chain.
EXTRA = ("worker-memory", "worker-apart", "floor-cavro", "worker-pygc", "runtime-1hop", "runtime-3hops")
RUNTIME_HOPS = {"runtime-1hop": 1, "runtime-3hops": 3}


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def quix_python(venv: Path) -> tuple[Path | None, str]:
    """The quixstreams virtualenv's python, made on first use; (None, why) if it cannot be had."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == QUIX_REQUIREMENT:
        return python, ""
    say(f"making the quixstreams virtualenv in {venv} (once) ...")
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", QUIX_REQUIREMENT, "fastavro>=1.13,<2"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            return None, f"`{' '.join(step[:4])}` failed: {(done.stdout + done.stderr).strip()[-300:]}"
    stamp.write_text(QUIX_REQUIREMENT)
    return python, ""


class StreamBench:
    """Runs the stream contenders on one broker, each on a fresh copy of the same events."""

    def __init__(self, bootstrap: str, events: workload.Workload, args: argparse.Namespace, tmp: Path):
        self.bootstrap, self.events, self.args, self.tmp = bootstrap, events, args, tmp
        self.n = len(events.messages)
        self.quix: Path | None = None

    def _topics(self) -> tuple[Any, str]:
        kafka = harness.fresh_topics(self.bootstrap, self.args.partitions)
        raw = Topics.from_settings(kafka).raw_events
        harness.preload(self.bootstrap, raw, self.events.messages)
        return kafka, raw

    def run(self, contender: str, on_started: Callable[[list[int]], None] | None = None) -> harness.Run:
        kafka, raw = self._topics()
        log = self.tmp / f"{contender}.log"
        timeout = max(300.0, self.n / 200)
        if contender in ("floor", "floor-cavro"):
            decoder = "cavro" if contender == "floor-cavro" else "fastavro"
            command = [
                sys.executable,
                str(BENCH / "floor_consumer.py"),
                self.bootstrap,
                raw,
                str(self.n),
                decoder,
            ]
            return harness.run_reporting_child(contender, command, timeout, log)
        if contender in RUNTIME_HOPS:
            command = [
                sys.executable,
                str(BENCH / "runtime_floor.py"),
                self.bootstrap,
                kafka.topic_prefix,
                str(self.args.partitions),
                str(self.n),
                str(RUNTIME_HOPS[contender]),
            ]
            return harness.run_reporting_child(contender, command, timeout, log)
        if contender == "quixstreams":
            assert self.quix is not None
            state = tempfile.mkdtemp(prefix="quix-state-", dir=self.tmp)
            command = [str(self.quix), str(BENCH / "quix_job.py"), self.bootstrap, raw, str(self.n), state]
            return harness.run_reporting_child(contender, command, timeout, log)
        settings = harness.worker_settings(
            kafka, self.tmp / f"worker-{kafka.topic_prefix}", triggers=contender != "worker-bare",
            state_store="memory" if contender == "worker-memory" else "disk",
            gc_threshold=0 if contender == "worker-pygc" else None,
        )  # fmt: skip
        apart = contender == "worker-apart"
        return harness.run_workers(
            contender, settings, self.n, self.tmp, on_started=on_started, triggers_apart=apart
        ).run


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(runs: Sequence[harness.Run]) -> dict[str, float]:
    eps = [r.events_per_s for r in runs]
    cpu = [r.cpu_us_per_event for r in runs]
    share = [r.cpu_s / r.seconds for r in runs if r.seconds > 0]
    return {
        "cpu_cores_median": median(share),
        "events_per_s_median": median(eps),
        "events_per_s_min": min(eps),
        "cpu_us_per_event_median": median(cpu),
        "cpu_us_per_event_min": min(cpu),
        "peak_rss_mb_max": max(r.peak_rss_mb for r in runs),
        "wall_s_median": median([r.wall_s for r in runs]),
        "rounds": len(runs),
    }


def stream_rounds(
    bench: StreamBench, contenders: list[str], rounds: int, warmup: bool = True
) -> dict[str, list[harness.Run]]:
    runs: dict[str, list[harness.Run]] = {c: [] for c in contenders}
    if warmup and contenders:
        # A fresh broker's first run pays its start (coordinator loading, cold log files): one
        # round-1 floor ran at 22,677 events/s against 36-40k in the next rounds and skewed that
        # round's ratios. Not counted.
        first = "floor" if "floor" in contenders else contenders[0]
        run = bench.run(first)
        say(f"  warm-up: {first:12s} {run.events_per_s:9,.0f} ev/s (not counted)")
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for contender in order:
            run = bench.run(contender)
            runs[contender].append(run)
            say(
                f"  round {r + 1}: {contender:12s} {run.events_per_s:9,.0f} ev/s "
                f"{run.cpu_us_per_event:6.0f} us/ev {run.peak_rss_mb:5.0f} MiB (wall {run.wall_s:.0f} s)"
            )
    return runs


def collector_names(args: argparse.Namespace) -> tuple[str, ...]:
    extra = (f"collector-{args.collector_processes}p",) if args.collector_processes > 1 else ()
    return ("collector", *extra, "collector-floor")


def collector_load(bootstrap: str, name: str, args: argparse.Namespace) -> tuple[Any, float]:
    """One measurement of one HTTP contender: (load, mean broker-ack wait in s, NaN if none)."""
    batches, size, clients = args.collector_batches, args.batch_size, args.clients
    if name == "collector":
        return collector_throughput.measure_collector(bootstrap, batches, size, clients)
    if name == "collector-floor":
        return collector_throughput.measure_bare(batches, size, clients), math.nan
    processes = args.collector_processes
    return collector_throughput.measure_collector_processes(
        bootstrap, processes, batches, size, clients
    ), math.nan


def collector_rounds(bootstrap: str, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    names = collector_names(args)
    out: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            load, ack = collector_load(bootstrap, name, args)
            row = {
                "events_per_s": load.events_per_s,
                "p50_ms": load.percentile_ms(50),
                "p99_ms": load.percentile_ms(99),
                "cpu_us_per_event": load.cpu_s / load.events * 1e6,
                "ack_wait_ms": ack * 1000,
            }
            out[name].append(row)
            say(f"  round {r + 1}: {name:15s} {row['events_per_s']:9,.0f} ev/s  p99 {row['p99_ms']:.0f} ms")
    return out


def sink_rounds(args: argparse.Namespace) -> dict[str, list[float]]:
    batches = sink_throughput.flatten(sink_throughput.records(args.sink_rows), args.sink_batch)
    out: dict[str, list[float]] = {"dedupe on": [], "dedupe off": []}
    for r in range(args.rounds):
        for dedupe in (True, False) if r % 2 == 0 else (False, True):
            landed = sink_throughput.land(batches, dedupe)
            out["dedupe on" if dedupe else "dedupe off"].append(landed.rows_per_s)
            say(
                f"  round {r + 1}: sink, dedupe {'on ' if dedupe else 'off'} {landed.rows_per_s:9,.0f} rows/s"
            )
    return out


def sink_from_kafka_rounds(
    bootstrap: str, events: workload.Workload, args: argparse.Namespace, tmp: Path
) -> dict[str, float]:
    """The whole ``webhouse sink`` from a topic, dedupe on (sink_from_kafka.py): the worker's
    enriched events of the same raw events, landed ``args.rounds`` times into fresh tables."""
    enriched = sink_from_kafka.enriched_events(len(events.messages))
    runs = []
    for r in range(args.rounds):
        figures = sink_from_kafka.land_once(bootstrap, enriched, True, tmp / "sink-from-kafka")
        runs.append(figures)
        say(
            f"  round {r + 1}: sink from Kafka, dedupe on {figures['rows_per_s']:9,.0f} rows/s "
            f"{figures['cpu_us_per_event']:5.0f} us/event"
        )
    return {
        "rows_per_s": median([f["rows_per_s"] for f in runs]),
        "rows_per_s_min": min(f["rows_per_s"] for f in runs),
        "events_per_s": median([f["events_per_s"] for f in runs]),
        "cpu_us_per_event": median([f["cpu_us_per_event"] for f in runs]),
    }


def profile_worker(bench: StreamBench, out: Path) -> Path:
    """One extra worker run (not in the table) with py-spy sampling it; raw collapsed stacks.

    Since 3 December 2026 only the thread holding the GIL is sampled: the stages share one
    interpreter, and a stage waiting for the GIL or for the broker showed on its Python line
    as if it worked there (the transaction commit looked like 17% of the samples, 8% here)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    target = out / "worker.pyspy.txt"
    spies: list[subprocess.Popen[bytes]] = []

    def attach(pids: list[int]) -> None:
        command = [
            py_spy,
            "record",
            "--pid",
            str(pids[0]),
            "--format",
            "raw",
            "--rate",
            "100",
            "--output",
            str(target),
            "--nonblocking",
            "--gil",  # the thread holding the GIL only: the stages' Python work, not their waits
        ]
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    bench.run("worker", on_started=attach)
    for spy in spies:
        spy.wait(60)
    return target


def table(
    stream: dict[str, dict[str, float]],
    collector: dict[str, dict[str, float]],
    sink: dict[str, dict[str, float]],
) -> str:
    lines = [
        "| contender | events/s median (min) | CPU us/event median (min) | cores busy | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, s in stream.items():
        lines.append(
            f"| {name} | {s['events_per_s_median']:,.0f} ({s['events_per_s_min']:,.0f}) | "
            f"{s['cpu_us_per_event_median']:,.0f} ({s['cpu_us_per_event_min']:,.0f}) | "
            f"{s['cpu_cores_median']:.2f} | {s['peak_rss_mb_max']:,.0f} |"
        )
    if collector:
        lines += [
            "",
            "| HTTP in | events/s median (min) | p50 ms | p99 ms median | server CPU us/event |",
            "|---|---|---|---|---|",
        ]
        for name, c in collector.items():
            lines.append(
                f"| {name} | {c['events_per_s']:,.0f} ({c['events_per_s_min']:,.0f}) | "
                f"{c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {c['cpu_us_per_event']:.0f} |"
            )
    if sink:
        lines += ["", "| sink (Delta) | rows/s median (min) |", "|---|---|"]
        for name, k in sink.items():
            lines.append(f"| {name} | {k['rows_per_s']:,.0f} ({k['rows_per_s_min']:,.0f}) |")
    return "\n".join(lines)


def per_round(runs: dict[str, list[harness.Run]], a: str, b: str, *, by_cpu: bool) -> float | None:
    """Median over the rounds of a's figure over b's in the same round (neighbours change by the hour)."""
    if not runs.get(a) or not runs.get(b):
        return None
    if by_cpu:  # events per CPU second
        return median(
            [y.cpu_us_per_event / x.cpu_us_per_event for x, y in zip(runs[a], runs[b], strict=True)]
        )
    return median([x.events_per_s / y.events_per_s for x, y in zip(runs[a], runs[b], strict=True)])


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="raw events per stream run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--contenders", default=",".join(STREAM), help=f"subset of {','.join(STREAM + EXTRA)}"
    )
    parser.add_argument("--bootstrap", help="an existing broker; default: start one on free ports")
    parser.add_argument(
        "--collector-batches", type=int, default=200, help="Segment batches per collector run"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="events per Segment batch")
    parser.add_argument(
        "--collector-processes", type=int, default=1, help="also run this many collector processes"
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes posting batches")
    parser.add_argument("--sink-rows", type=int, default=100_000)
    parser.add_argument("--sink-batch", type=int, default=20_000)
    parser.add_argument("--no-warmup", action="store_true", help="no uncounted first stream run")
    parser.add_argument("--no-collector", action="store_true")
    parser.add_argument("--no-sink", action="store_true")
    parser.add_argument("--profile", type=Path, help="also py-spy one extra worker run into this folder")
    parser.add_argument("--quix-venv", type=Path, default=QUIX_VENV)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    args.contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(args.contenders) - set(STREAM + EXTRA)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {', '.join(STREAM + EXTRA)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with scratch_dir("webhouse-compare-") as tmp:
        return compare(args, tmp)


def compare(args: argparse.Namespace, tmp: Path) -> int:
    """Every part of the comparison; logs and state in ``tmp``."""
    started = time.monotonic()
    contenders: list[str] = list(args.contenders)
    quix, skipped = None, ""
    if "quixstreams" in contenders:
        quix, skipped = quix_python(args.quix_venv)
        if quix is None:
            say(f"quixstreams SKIPPED: {skipped}")
            contenders.remove("quixstreams")
    say(f"loading {args.events} events ...")
    events = workload.load(args.events)
    say(
        f"  {len(events.messages)} events, {events.mean_bytes:.0f} bytes each on average, {events.devices} "
        f"devices, {events.user_agents} distinct user agents, {events.pages} pages; logs in {tmp}"
    )
    stream: dict[str, dict[str, float]] = {}
    stream_runs: dict[str, list[harness.Run]] = {}
    collector: dict[str, dict[str, float]] = {}
    sink: dict[str, dict[str, float]] = {}
    profile = None
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        bench = StreamBench(bootstrap, events, args, tmp)
        bench.quix = quix
        say(f"stream: {', '.join(contenders)}; {args.rounds} round(s) of {len(events.messages)} events")
        stream_runs = stream_rounds(bench, contenders, args.rounds, warmup=not args.no_warmup)
        for name, runs in stream_runs.items():
            stream[name] = summarise(runs)
        if not args.no_collector:
            say(f"collector: {args.collector_batches} batches of {args.batch_size}, {args.clients} clients")
            for name, rows in collector_rounds(bootstrap, args).items():
                collector[name] = {k: median([r[k] for r in rows]) for k in rows[0]}
                collector[name]["events_per_s_min"] = min(r["events_per_s"] for r in rows)
        if not args.no_sink:
            say("sink from Kafka: the worker's enriched events, landed as `webhouse sink` does")
            sink["dedupe on, from Kafka"] = sink_from_kafka_rounds(bootstrap, events, args, tmp)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            say("profiling one extra worker run with py-spy ...")
            profile = profile_worker(bench, args.profile)
    if not args.no_sink:
        say(f"sink: {args.sink_rows} rows in batches of {args.sink_batch}")
        for name, values in sink_rounds(args).items():
            sink[f"{name}, no Kafka"] = {"rows_per_s": median(values), "rows_per_s_min": min(values)}
    print(table(stream, collector, sink))

    ratios = {
        "stream_vs_floor": per_round(stream_runs, "worker", "floor", by_cpu=False),
        "stream_vs_quixstreams": per_round(stream_runs, "worker", "quixstreams", by_cpu=False),
        "stream_vs_floor_cpu": per_round(stream_runs, "worker", "floor", by_cpu=True),
        "stream_vs_quixstreams_cpu": per_round(stream_runs, "worker", "quixstreams", by_cpu=True),
        "stream_vs_floor_cavro": per_round(stream_runs, "worker", "floor-cavro", by_cpu=False),
        "runtime_vs_floor": per_round(stream_runs, "runtime-3hops", "floor", by_cpu=False),
        "runtime_vs_floor_cpu": per_round(stream_runs, "runtime-3hops", "floor", by_cpu=True),
    }
    print("\n" + "\n".join(f"{k}: {v:.3f}" for k, v in ratios.items() if v is not None))
    say(f"took {time.monotonic() - started:.0f} s")

    result: dict[str, Any] = {
        "stream_vs_floor": ratios["stream_vs_floor"],
        "stream_vs_quixstreams": ratios["stream_vs_quixstreams"],
        "collector_eps": collector.get("collector", {}).get("events_per_s"),
        "collector_p99_ms": collector.get("collector", {}).get("p99_ms"),
        "sink_rows_per_s": sink.get("dedupe on, no Kafka", {}).get("rows_per_s"),
        "sink_from_kafka_rows_per_s": sink.get("dedupe on, from Kafka", {}).get("rows_per_s"),
        "sink_from_kafka_cpu_us_per_event": sink.get("dedupe on, from Kafka", {}).get("cpu_us_per_event"),
        "stream_vs_floor_cpu": ratios["stream_vs_floor_cpu"],
        "stream_vs_quixstreams_cpu": ratios["stream_vs_quixstreams_cpu"],
        "stream_vs_floor_cavro": ratios["stream_vs_floor_cavro"],
        "runtime_vs_floor": ratios["runtime_vs_floor"],
        "runtime_vs_floor_cpu": ratios["runtime_vs_floor_cpu"],
        "collector_vs_floor": ratio(
            collector.get("collector", {}).get("events_per_s"),
            collector.get("collector-floor", {}).get("events_per_s"),
        ),
        "stream": stream,
        "stream_runs": {name: [run.to_json() for run in runs] for name, runs in stream_runs.items()},
        "collector": collector,
        "sink": sink,
        "events": len(events.messages),
        "rounds": args.rounds,
        "workload": {
            "devices": events.devices,
            "user_agents": events.user_agents,
            "pages": events.pages,
            "mean_bytes": events.mean_bytes,
        },
        "quixstreams_skipped": skipped or None,
        "profile": str(profile) if profile else None,
        "seconds": time.monotonic() - started,
    }
    if args.json:
        print(json.dumps(jsonable(result), allow_nan=False))
    return 0


def jsonable(value: Any) -> Any:
    """NaN (a figure that does not apply, e.g. the bare floor's broker wait) becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
