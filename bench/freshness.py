"""Freshness: how long after the collector acknowledged an event it is queryable in the webhouse.

    .venv/bin/python bench/freshness.py --rate 200 --seconds 420 [--lateness 10] [--json]

Starts the real stack as `webhouse chaos` does (``tools.chaos.stack.Stack``: a local broker of
its own; ``tools.demo.run.start_services``: `webhouse collector`, `webhouse worker` with the
triggers in it, `webhouse sink`), with the settings' defaults, not the demo's quicker ones (the
sink's batch window, the worker's idle intervals); ``--lateness`` sets the worker's allowed
lateness, ``--sink-window`` the sink's batch window (``webhouse.batch_max_seconds``),
``--triggers-apart`` runs the triggers in a `webhouse triggers run` process of their own (the
events table does not wait for them, but in one process they share the worker's interpreter lock;
apart, each has a core). One probe
event, landed before the traffic starts, shows every stage is up.

Then it posts Segment ``/v1/batch`` requests at a fixed rate for a fixed time, every event stamped
with the wall clock, and records per message id: when its request was acknowledged (200: the
broker has it), when it first appeared on the enriched topic (a ``read_committed`` consumer: the
worker's transaction committed), and when it first appeared in the Delta ``events`` table (polled
every ``--poll`` seconds; a DuckDB query reads the same snapshot, ``sinks.duck``). After the
traffic it waits up to ``--wait`` seconds for what was acknowledged to land.

The collector's latency at that rate (post -> 200, requests): ``request_ms``.
Freshness = queryable - acknowledged. "steady" keeps the events acknowledged while traffic still
flowed for a margin after them (the sink's batch window and the worker's batches see steady
traffic), not the tail sent just before the traffic stopped. The worker sends each event on at
arrival (its visit is found when the visit closes, ``events_sessioned``), so the allowed lateness
holds no row back. Stages: acknowledged -> enriched topic, enriched topic -> table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq
from confluent_kafka import Consumer
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipeline.kafka_admin import ensure_topics
from pipeline.runtime.control import is_control
from pipeline.serde import make_serde
from pipeline.settings import REPO_ROOT, Settings, load_settings
from pipeline.topics import Topics
from tools.chaos.stack import Stack
from tools.demo.run import child_env, run_settings, start_services
from tools.demo.services import ServiceError, ServiceGroup

PREFIX = "webhouse-fresh"
LATENESS_ENV = "WEBHOUSE_WORKER__SESSION__ALLOWED_LATENESS_S"
SINK_WINDOW_ENV = "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS"
# The demo's quicker tunings (child_env): removed, so the services run the settings' defaults.
DEMO_TUNINGS = (
    "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS",
    "WEBHOUSE_WORKER__SESSION__IDLE_CLOSE_INTERVAL_S",
    "WEBHOUSE_TRIGGERS__SWEEP_INTERVAL_S",
    "WEBHOUSE_WORKER__IDLE_AFTER_S",
)
STEADY_MARGIN_S = 30.0  # before the traffic stopped: the sink's batch window and the worker's batch
MAX_IN_FLIGHT = 64
TIMELINE_STEP_S = 30.0
PROBE_TRIES = 10
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


class FreshnessError(RuntimeError):
    """The stack did not come up, or the probe never landed: no figure would mean anything."""


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page_event(message_id: str, device: str) -> dict[str, Any]:
    """A browser page view stamped now (event time = the wall clock)."""
    now = iso_now()
    path = f"/p/{hash(message_id) % 500}"
    return {
        "type": "page",
        "name": "Product",
        "messageId": message_id,
        "anonymousId": device,
        "timestamp": now,
        "sentAt": now,
        "properties": {"path": path, "url": f"https://shop.example{path}"},
        "context": {"userAgent": USER_AGENT, "ip": "198.51.100.7"},
    }


# -- the client ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    acked: dict[str, float] = field(default_factory=dict)  # message id -> wall time of the 200
    sent: int = 0
    refused: int = 0  # events in requests answered other than 200
    failed: int = 0  # events in requests that got no answer
    started: float = 0.0
    ended: float = 0.0  # wall time of the last answer
    # seconds from each answered request's post to its 200 (the collector answers once the broker
    # has every event of it): the collector's latency at the offered rate, not at saturation
    request_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        span = self.ended - self.started
        return len(self.acked) / span if span > 0 else 0.0


async def post_batch(
    http: aiohttp.ClientSession, url: str, ids: Sequence[str], devices: int, out: Sent
) -> None:
    batch = [page_event(mid, f"fresh-device-{int(mid.rsplit('-', 1)[1]) % devices}") for mid in ids]
    out.sent += len(batch)
    posted = time.time()
    try:
        async with http.post(f"{url}/v1/batch", json={"batch": batch}) as answer:
            await answer.read()
            at = time.time()
            if answer.status != 200:
                out.refused += len(batch)
                return
    except (aiohttp.ClientError, TimeoutError):
        out.failed += len(batch)
        return
    out.acked.update(dict.fromkeys(ids, at))
    out.request_s.append(at - posted)
    out.ended = max(out.ended, at)


async def send_paced(
    url: str, write_key: str, ids: Sequence[str], rate: float, batch_size: int, devices: int
) -> Sent:
    """``ids`` in batches of ``batch_size``, one batch every batch_size / rate seconds, requests in
    flight side by side (up to MAX_IN_FLIGHT) so that a slow answer does not slow the pace."""
    out = Sent(started=time.time())
    interval = batch_size / rate
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(chunk: Sequence[str]) -> None:
        async with gate:
            await post_batch(http, url, chunk, devices, out)

    async with aiohttp.ClientSession(
        headers={"Authorization": aiohttp.encode_basic_auth(write_key, "")}, timeout=timeout
    ) as http:
        start = time.monotonic()
        tasks = []
        for n, first in enumerate(range(0, len(ids), batch_size)):
            delay = start + n * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(ids[first : first + batch_size])))
        await asyncio.gather(*tasks)
    return out


# -- the watchers ----------------------------------------------------------------------------------


class Watcher(threading.Thread):
    """A thread recording when each message id is first seen somewhere."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def note(self, ids: Iterable[str], at: float) -> None:
        for mid in ids:
            self.seen.setdefault(mid, at)

    def run(self) -> None:
        try:
            self.watch()
        except BaseException as exc:  # reported by check(), in the main thread
            self.error = exc

    def watch(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        if self.error is not None:
            raise FreshnessError(f"the {self.name} watcher failed: {self.error!r}") from self.error

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=30)


class TopicWatcher(Watcher):
    """The enriched topic as a read_committed consumer: what the worker's transactions committed."""

    def __init__(self, bootstrap: str, topic: str, schema_registry_url: str | None) -> None:
        super().__init__("enriched-topic")
        self.serde = make_serde("customer_event", schema_registry_url)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"freshness-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([topic])

    def watch(self) -> None:
        try:
            while not self.stop.is_set():
                messages = self.consumer.consume(num_messages=1000, timeout=0.2)
                at = time.time()
                ids = [
                    self.serde.decode(value)["message_id"]
                    for m in messages
                    if m.error() is None and (value := m.value()) and not is_control(m.headers())
                ]
                self.note(ids, at)
        finally:
            self.consumer.close()


class TableWatcher(Watcher):
    """The Delta ``events`` table, polled: a new snapshot's new files, their message ids."""

    def __init__(self, path: str, every_s: float) -> None:
        super().__init__("events-table")
        self.path = path
        self.every_s = every_s
        self.files: set[str] = set()
        self.versions = 0

    def poll(self) -> None:
        try:
            table = DeltaTable(self.path)
        except TableNotFoundError:
            return
        at = time.time()  # the snapshot is visible from here on
        for uri in table.file_uris():
            if uri not in self.files:
                self.files.add(uri)
                self.note(pq.read_table(uri, columns=["message_id"]).column("message_id").to_pylist(), at)
        self.versions = table.version() + 1

    def watch(self) -> None:
        while not self.stop.wait(self.every_s):
            self.poll()


# -- figures ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    count: int
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        data = sorted(values)
        if not data:
            return cls(0)

        def rank(q: float) -> float:  # nearest rank
            return round(data[min(len(data) - 1, max(0, int(q * len(data) + 0.999999) - 1))], 2)

        return cls(len(data), round(data[0], 2), rank(0.5), rank(0.9), rank(0.99), round(data[-1], 2))


def split(
    ids: Iterable[str], sent: Sent, enriched: dict[str, float], table: dict[str, float]
) -> dict[str, Any]:
    """Freshness and its two stages over ``ids`` (the landed ones)."""
    ids = [i for i in ids if i in table]
    staged = [i for i in ids if i in enriched]
    return {
        "freshness_s": asdict(Stats.of(table[i] - sent.acked[i] for i in ids)),
        "acked_to_enriched_s": asdict(Stats.of(enriched[i] - sent.acked[i] for i in staged)),
        "enriched_to_table_s": asdict(Stats.of(table[i] - enriched[i] for i in staged)),
    }


def timeline(acked: Sequence[str], sent: Sent, enriched: dict[str, float], table: dict[str, float],
             step_s: float) -> list[dict[str, Any]]:  # fmt: skip
    """Per ``step_s`` of acknowledgement time: how fresh those events were (the warm-up, the
    steady state and the tail after the traffic stopped, told apart)."""
    buckets: dict[int, list[str]] = {}
    for i in acked:
        if i in table:
            buckets.setdefault(int((sent.acked[i] - sent.started) // step_s), []).append(i)
    rows = []
    for n, ids in sorted(buckets.items()):
        fresh = Stats.of(table[i] - sent.acked[i] for i in ids)
        staged = Stats.of(enriched[i] - sent.acked[i] for i in ids if i in enriched)
        rows.append({"from_s": n * step_s, "count": fresh.count, "freshness_p50": fresh.p50,
                     "freshness_max": fresh.max, "acked_to_enriched_p50": staged.p50})  # fmt: skip
    return rows


def dump(path: Path, sent: Sent, enriched: dict[str, float], table: dict[str, float]) -> None:
    """Every acknowledged event's three wall times (seconds since the traffic started)."""
    with path.open("w") as out:
        out.write("message_id,acked_s,enriched_s,table_s\n")
        for i, at in sorted(sent.acked.items(), key=lambda kv: kv[1]):
            cells = [at, enriched.get(i), table.get(i)]
            out.write(
                i + "," + ",".join("" if c is None else f"{c - sent.started:.3f}" for c in cells) + "\n"
            )


@dataclass(frozen=True, slots=True)
class Options:
    rate: float
    seconds: float
    lateness: int | None
    sink_window: float | None
    wait: float | None
    batch: int
    devices: int
    poll: float
    workdir: Path
    triggers_apart: bool = False


def effective(settings: Settings, opts: Options) -> dict[str, Any]:
    """The settings that bound freshness, as the children run them."""
    lateness, window = opts.lateness, opts.sink_window
    return {
        "allowed_lateness_s": settings.worker.session.allowed_lateness_s if lateness is None else lateness,
        "idle_close_interval_s": settings.worker.session.idle_close_interval_s,
        "worker_idle_after_s": settings.worker.idle_after_s,
        "worker_batch_within_s": settings.worker.batch_within_s,
        "sink_batch_max_seconds": settings.webhouse.batch_max_seconds if window is None else window,
        "sink_batch_max_rows": settings.webhouse.batch_max_rows,
        "partitions": settings.kafka.default_partitions,
        "triggers_apart": opts.triggers_apart,
    }


def report(
    opts: Options,
    knobs: dict[str, Any],
    sent: Sent,
    enriched: dict[str, float],
    table: dict[str, float],
    waited_s: float,
    load: tuple[float, float],
) -> dict[str, Any]:
    cutoff = sent.ended - STEADY_MARGIN_S
    acked = sorted(sent.acked, key=sent.acked.__getitem__)
    steady = [i for i in acked if sent.acked[i] <= cutoff]
    return {
        "rate_requested": opts.rate,
        "rate_achieved": round(sent.rate, 1),
        "seconds": opts.seconds,
        "sent": sent.sent,
        "acknowledged": len(sent.acked),
        "refused": sent.refused,
        "failed": sent.failed,
        "landed": sum(1 for i in acked if i in table),
        "never_landed": sum(1 for i in acked if i not in table),
        "never_enriched": sum(1 for i in acked if i not in enriched),
        "waited_s": round(waited_s, 1),
        "settings": knobs,
        "request_ms": asdict(Stats.of(1000 * s for s in sent.request_s)),
        "all": split(acked, sent, enriched, table),
        "steady": {"acknowledged": len(steady), **split(steady, sent, enriched, table)},
        "steady_rule": f"acknowledged >= {STEADY_MARGIN_S:.0f}s before the traffic stopped",
        "timeline": timeline(acked, sent, enriched, table, TIMELINE_STEP_S),
        "per_event_csv": str(opts.workdir / "events.csv"),
        "load_average_1m": [round(load[0], 2), round(load[1], 2)],
        "cpus": os.cpu_count(),
    }


# -- the run ---------------------------------------------------------------------------------------


def stack_env(settings: Settings, stack: Stack, tables: Path, opts: Options) -> dict[str, str]:
    env = child_env(settings, PREFIX, tables, stack.collector_port)
    for name in DEMO_TUNINGS:
        env.pop(name, None)
    if opts.lateness is not None:
        env[LATENESS_ENV] = str(opts.lateness)
    if opts.sink_window is not None:
        env[SINK_WINDOW_ENV] = str(opts.sink_window)
    return env


def wait_for(watchers: Sequence[Watcher], ids: Sequence[str], timeout_s: float, group: ServiceGroup) -> float:
    """Until every id is seen by every watcher, or ``timeout_s``; returns the time waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        group.check_alive()
        for w in watchers:
            w.check()
        if all(i in w.seen for w in watchers for i in ids):
            break
        time.sleep(0.5)
    return time.monotonic() - started


def send_probe(url: str, write_key: str) -> Sent:
    """One event, retried as an SDK would until acknowledged (a collector just up, on a loaded
    machine, may refuse or time out at first)."""
    for _ in range(PROBE_TRIES):
        probe = asyncio.run(send_paced(url, write_key, ["probe-0"], 1.0, 1, 1))
        if probe.acked:
            return probe
        log(f"probe not acknowledged ({probe.refused} refused, {probe.failed} without answer); again")
        time.sleep(2)
    raise FreshnessError(f"the collector did not acknowledge the probe event in {PROBE_TRIES} tries")


def measure(
    opts: Options, settings: Settings, stack: Stack, group: ServiceGroup, run: Settings
) -> dict[str, Any]:
    topics = Topics.from_settings(run.kafka)
    enriched = TopicWatcher(stack.bootstrap, topics.enriched_events, run.kafka.schema_registry_url)
    table = TableWatcher(str(Path(run.webhouse.root) / "events"), opts.poll)
    enriched.start()
    table.start()
    try:
        knobs = effective(settings, opts)
        write_key = next(iter(settings.collector.write_keys))
        probe = send_probe(stack.collector_url, write_key)
        log(
            "probe sent; waiting until it lands (a quiet partition releases it after "
            f"{knobs['idle_close_interval_s']:g}s, then the sink's {knobs['sink_batch_max_seconds']:g}s "
            "window)"
        )
        wait_for([enriched, table], ["probe-0"], 180, group)
        if "probe-0" not in table.seen:
            raise FreshnessError("the probe event never landed: the stack is not working")
        log(
            f"probe landed in {table.seen['probe-0'] - probe.acked['probe-0']:.1f}s; sending "
            f"{opts.rate:g} events/s for {opts.seconds:g}s"
        )
        load_start = os.getloadavg()[0]
        ids = [f"fresh-{n}" for n in range(int(opts.rate * opts.seconds))]
        sent = asyncio.run(
            send_paced(stack.collector_url, write_key, ids, opts.rate, opts.batch, opts.devices)
        )
        load_end = os.getloadavg()[0]
        log(f"sent {sent.sent:,}, acknowledged {len(sent.acked):,} ({sent.rate:,.1f}/s); waiting to land")
        wait_s = opts.wait if opts.wait is not None else 120.0
        waited = wait_for([enriched, table], sorted(sent.acked), wait_s, group)
        dump(opts.workdir / "events.csv", sent, enriched.seen, table.seen)
        return report(opts, knobs, sent, enriched.seen, table.seen, waited, (load_start, load_end))
    finally:
        enriched.close()
        table.close()


def run_bench(opts: Options) -> dict[str, Any]:
    settings = load_settings()
    shutil.rmtree(opts.workdir, ignore_errors=True)
    opts.workdir.mkdir(parents=True)
    with Stack(opts.workdir) as stack:
        stack.up()
        base = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": stack.bootstrap})}
        )
        env = stack_env(base, stack, (opts.workdir / "tables").resolve(), opts)
        run = run_settings(base, PREFIX, env)
        ensure_topics(
            stack.bootstrap, Topics.from_settings(run.kafka).specs(), settings.kafka.replication_factor
        )
        with ServiceGroup(env=env, log_dir=opts.workdir / "logs") as group:
            start_services(group, stack.collector_url, separate_triggers=opts.triggers_apart)
            log(f"stack up in {opts.workdir} (broker {stack.bootstrap}, collector {stack.collector_url})")
            stack.group = group  # Stack.close stops the services too, should we fail before the with ends
            return measure(opts, settings, stack, group, run)


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def table_text(result: dict[str, Any]) -> str:
    lines = [
        f"rate {result['rate_achieved']:,}/s of {result['rate_requested']:g} requested, "
        f"{result['acknowledged']:,} acknowledged, {result['landed']:,} landed, "
        f"{result['never_landed']:,} never landed (waited {result['waited_s']:g}s), "
        f"allowed lateness {result['settings']['allowed_lateness_s']}s, "
        f"load average {result['load_average_1m'][0]:g} -> {result['load_average_1m'][1]:g} "
        f"on {result['cpus']} cpus",
        f"{'seconds':<28}{'count':>8}{'min':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}",
    ]
    for subset in ("all", "steady"):
        for figure in ("freshness_s", "acked_to_enriched_s", "enriched_to_table_s"):
            s = result[subset][figure]
            cells = "".join(
                f"{'-' if s[k] is None else s[k]:>8}" for k in ("min", "p50", "p90", "p99", "max")
            )
            lines.append(f"{subset + ' ' + figure:<28}{s['count']:>8}{cells}")
    r = result["request_ms"]
    cells = "".join(f"{'-' if r[k] is None else r[k]:>8}" for k in ("min", "p50", "p90", "p99", "max"))
    lines.append(f"{'request ms (post -> 200)':<28}{r['count']:>8}{cells}")
    lines.append(
        "by acknowledgement time (s since the traffic started): count, freshness p50 / max, to enriched p50"
    )
    for row in result["timeline"]:
        lines.append(
            f"  {row['from_s']:>6g}  {row['count']:>6}  {row['freshness_p50']:>8} / {row['freshness_max']:<8}"
            f"  {row['acked_to_enriched_p50']}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events per second sent")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the traffic lasts")
    parser.add_argument("--lateness", type=int, default=None, help="the worker's allowed lateness, seconds")
    parser.add_argument("--sink-window", type=float, default=None, help="the sink's batch window, seconds")
    parser.add_argument("--wait", type=float, default=None, help="after the traffic (default: 120 s)")
    parser.add_argument("--batch", type=int, default=10, help="events per /v1/batch request")
    parser.add_argument("--devices", type=int, default=500, help="distinct anonymous ids (visitors)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between reads of the events table")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".webhouse" / "bench" / "freshness")
    parser.add_argument(
        "--triggers-apart", action="store_true",
        help="the trigger stages in a `webhouse triggers run` process of their own",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    opts = Options(
        rate=args.rate,
        seconds=args.seconds,
        lateness=args.lateness,
        sink_window=args.sink_window,
        wait=args.wait,
        batch=args.batch,
        devices=args.devices,
        poll=args.poll,
        workdir=args.workdir.resolve(),
        triggers_apart=args.triggers_apart,
    )
    try:
        result = run_bench(opts)
    except (FreshnessError, ServiceError) as exc:
        log(f"freshness bench failed: {exc}")
        return 1
    print(table_text(result), flush=True)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
