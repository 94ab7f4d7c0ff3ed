"""`webhouse demo`: the whole house, end to end, on one machine.

1. a broker: the configured one if it answers, else the project's local Kafka;
2. the project's topics under a run prefix (fresh run: a new prefix, old demo topics dropped);
3. `webhouse collector`, `webhouse worker`, `webhouse triggers run`, `webhouse sink` as child
   processes (the trigger stages in a process of their own, as `deploy/docker-compose.yml` runs them);
4. the traffic simulator through the real collector (Segment HTTP API);
5. a wait until what was sent is queryable in the webhouse;
6. a summary from DuckDB, and an offline HTML report;
7. every child stopped cleanly, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import shutil
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka, free_port
from pipeline.runtime.control import send_end_of_input
from pipeline.runtime.progress import unprocessed
from pipeline.settings import Settings, load_settings
from pipeline.topics import Topics
from processors.worker.runner import group_id as worker_app_id
from sinks.duck import connect
from sinks.report import Figures, read_figures
from sinks.tables import default_specs, source_topic
from tools.demo.alert_truth import AlertVerdict, compare
from tools.demo.report import write_report
from tools.demo.services import ServiceError, ServiceGroup
from tools.demo.summary import format_summary
from tools.simulate.config import Mix, SimulationConfig
from tools.simulate.generate import Simulation, generate
from tools.simulate.sender import SendPolicy, SendReport, send_events
from triggers.stages import consumer_groups as trigger_groups

log = logging.getLogger(__name__)

DEMO_PREFIX = "webhouse-demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    workdir: Path
    customers: int
    days: float
    rate: float
    seed: int
    append: bool
    settle_s: float = 12.0
    timeout_s: float = 600.0
    mix: Mix = field(default_factory=Mix)  # the simulated behaviour (tests raise rare events' rates)


@dataclass(frozen=True, slots=True)
class DemoResult:
    simulation: Simulation
    send: SendReport
    figures: Figures
    settings: Settings
    tables_root: Path
    report_path: Path
    wall_s: float
    alerts: AlertVerdict


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _broker(settings: Settings) -> LocalKafka | None:
    """Start the local broker unless the configured one already answers; returns what we started."""
    local = LocalKafka.from_settings(settings.kafka)
    if local.answers(timeout_s=3.0):
        say(f"using the Kafka broker at {settings.kafka.bootstrap_servers}")
        return None
    say(f"no broker at {settings.kafka.bootstrap_servers}: starting local Apache Kafka {local.version}")
    local.up()
    return local


def _run_prefix(opts: DemoOptions, bootstrap: str) -> str:
    """A topic prefix per fresh run, so a rerun never reads the last run's events or offsets."""
    state = opts.workdir / "state.json"
    if opts.append and state.exists():
        prefix: str = json.loads(state.read_text())["prefix"]
        return prefix
    _drop_old_demo_topics(bootstrap)
    shutil.rmtree(opts.workdir / "tables", ignore_errors=True)
    prefix = f"{DEMO_PREFIX}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    opts.workdir.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"prefix": prefix}))
    return prefix


def _drop_old_demo_topics(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    old = [t for t in admin.list_topics(timeout=10).topics if t.startswith(DEMO_PREFIX)]
    if old:
        for future in admin.delete_topics(old, operation_timeout=30).values():
            future.result()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, http.client.HTTPException):  # not up, or gone in the middle of its answer
        return False


def child_env(settings: Settings, prefix: str, tables: Path, collector_port: int) -> dict[str, str]:
    return {
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_WEBHOUSE__ROOT": str(tables),
        "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS": "2",
        "WEBHOUSE_WEBHOUSE__CONSUMER_GROUP": f"{prefix}-sink",
        "WEBHOUSE_WORKER__DATA_DIR": str(tables.parent / "worker"),
        "WEBHOUSE_WORKER__SESSION__IDLE_CLOSE_INTERVAL_S": "3",
        "WEBHOUSE_TRIGGERS__SWEEP_INTERVAL_S": "3",
        # A replay of history: a partition quiet before the traffic starts must not be taken for
        # idle (its first events would then be late for the triggers); the end of input ends it.
        "WEBHOUSE_WORKER__IDLE_AFTER_S": "3600",
        "WEBHOUSE_COLLECTOR__PORT": str(collector_port),
    }


def _count(settings: Settings, table: str) -> int:
    con = connect(settings)
    try:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    except duckdb.CatalogException:  # no view: the sink has not committed to that table yet
        return 0
    finally:
        con.close()
    return int(row[0]) if row else 0


def consumer_groups(settings: Settings, separate_triggers: bool = False) -> dict[str, list[str]]:
    """Each consumer group of the stack and the topics it consumes: the worker's stage, the trigger
    stages (the same groups whether they run in the worker's process or on their own) and the sink.
    ``separate_triggers`` changes nothing here; it is kept for callers that name the layout."""
    topics = Topics.from_settings(settings.kafka)
    sink_topics = sorted(
        {source_topic(spec, topics) for spec in default_specs(settings.webhouse.events_source)}
    )
    return {
        settings.webhouse.consumer_group: sink_topics,
        worker_app_id(settings): [topics.raw_events],
        **trigger_groups(settings),
    }


def wait_queryable(
    settings: Settings,
    expected_events: int,
    groups: dict[str, list[str]],
    check: Callable[[], None],
    settle_s: float,
    timeout_s: float,
) -> dict[str, int]:
    """Until every valid event is landed, no consumer group of ``groups`` has lag left (so triggers
    and sessions are through too), and the tables have stopped growing. ``check`` raises when a
    service the wait depends on is gone."""
    bootstrap = settings.kafka.bootstrap_servers
    deadline = time.monotonic() + timeout_s
    watched = ("events", "sessions", "alerts", "dead_letters")
    last: dict[str, int] = {}
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        check()
        counts = {t: _count(settings, t) for t in watched}
        if counts != last:
            last, stable_since = counts, time.monotonic()
            say(
                "landed: "
                + ", ".join(f"{t} {n:,}" for t, n in counts.items())
                + f" (events expected {expected_events:,})"
            )
        elif (
            counts["events"] >= expected_events
            and time.monotonic() - stable_since >= settle_s
            and all(unprocessed(bootstrap, group, topics) == 0 for group, topics in groups.items())
        ):
            return counts
        time.sleep(1.0)
    behind = {
        group: n for group, topics in groups.items() if (n := unprocessed(bootstrap, group, topics, 1000))
    }
    raise ServiceError(
        f"the webhouse did not settle within {timeout_s:.0f}s; last counts {last}; "
        f"groups behind (records left, up to 1,000 a partition): {behind or 'none'}"
    )


def start_services(group: ServiceGroup, collector_url: str, separate_triggers: bool = False) -> None:
    """The stack's processes, each by its real command: collector (waited for), worker, triggers
    (in the worker's App unless ``separate_triggers``), sink. A supervisor restarts one with
    ``group.restart``: the same command and environment."""
    collector = group.start("collector", "collector")
    group.wait_until(collector, lambda: http_ok(f"{collector_url}/health"), 60, "answering")
    worker_env = {"WEBHOUSE_METRICS__PORT": str(free_port())}
    if separate_triggers:
        worker_env["WEBHOUSE_WORKER__EXTENSIONS"] = "[]"
    group.start("worker", "worker", extra_env=worker_env)
    if separate_triggers:
        group.start("triggers", "triggers", "run", extra_env={"WEBHOUSE_METRICS__PORT": str(free_port())})
    group.start("sink", "sink", extra_env={"WEBHOUSE_METRICS__PORT": str(free_port())})


def run_settings(settings: Settings, prefix: str, env: dict[str, str]) -> Settings:
    """The parent's view of the settings its children get through ``env`` (topics, tables, group)."""
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": prefix}),
            "webhouse": settings.webhouse.model_copy(
                update={
                    "root": env["WEBHOUSE_WEBHOUSE__ROOT"],
                    "consumer_group": env["WEBHOUSE_WEBHOUSE__CONSUMER_GROUP"],
                }
            ),
        }
    )


def simulation_config(
    settings: Settings, seed: int, customers: int, days: float, now: datetime, mix: Mix | None = None
) -> SimulationConfig:
    """The simulator's configuration for the triggers' settings (tiers, cross-sell)."""
    return SimulationConfig(
        seed=seed,
        now=now,
        days=days,
        customers=customers,
        mix=mix or Mix(),
        value_tiers=tuple((t.name, t.min_revenue, t.min_orders) for t in settings.triggers.value_tiers),
        cross_sell={k: tuple(v) for k, v in settings.triggers.cross_sell.items()},
    )


def run_demo(opts: DemoOptions, base: Settings | None = None) -> DemoResult:
    started = time.monotonic()
    settings = base or load_settings()
    broker = _broker(settings)
    try:
        prefix = _run_prefix(opts, settings.kafka.bootstrap_servers)
        tables = (opts.workdir / "tables").resolve()
        collector_port = free_port()
        env = child_env(settings, prefix, tables, collector_port)
        settings_of_run = run_settings(settings, prefix, env)
        topics = Topics.from_settings(settings_of_run.kafka)
        ensure_topics(settings.kafka.bootstrap_servers, topics.specs(), settings.kafka.replication_factor)
        say(f"topics ready under prefix {prefix}")

        with ServiceGroup(env=env, log_dir=opts.workdir / "logs") as group:
            url = f"http://127.0.0.1:{collector_port}"
            start_services(group, url, separate_triggers=True)
            say(f"collector at {url}; worker, triggers and sink started (logs in {group.log_dir})")

            now = datetime.now(UTC).replace(microsecond=0)
            config = simulation_config(settings, opts.seed, opts.customers, opts.days, now, opts.mix)
            simulation = generate(config)
            truth_path = opts.workdir / "ground-truth.json"
            simulation.truth.write(truth_path)
            truth = simulation.truth
            say(
                f"simulated {truth.customers_simulated:,} people, {len(simulation.events):,} events over "
                f"{opts.days:g} days (ground truth: {truth_path}); sending at {opts.rate:g}/s"
            )
            report = asyncio.run(send(simulation, url, settings, opts.rate))
            say(
                f"sent {report.events:,} events in {report.elapsed_s:.1f}s ({report.rate:,.0f}/s): "
                f"collector accepted {report.accepted:,}, refused {report.refused:,}"
            )
            # Nothing more will come: the stages close what they hold (sessions, absence windows)
            # instead of waiting for traffic (pipeline.runtime.control).
            partitions = send_end_of_input(settings.kafka.bootstrap_servers, topics.raw_events)
            say(f"end of input written to the {partitions} raw partitions")
            counts = wait_queryable(
                settings_of_run, report.accepted, consumer_groups(settings_of_run), group.check_alive,
                opts.settle_s, opts.timeout_s,
            )  # fmt: skip
            say("webhouse settled: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))

            con = connect(settings_of_run)
            try:
                figures = read_figures(con)
                verdict = compare(con, simulation.truth, simulation.events, settings.triggers.absence_grace_s)
            finally:
                con.close()
            print(format_summary(figures, simulation.truth))
            print(verdict.line())
            report_path = write_report(figures, simulation.truth, opts.workdir / "report.html")
            say(f"report: {report_path}")
            say("stopping services")
        return DemoResult(
            simulation, report, figures, settings_of_run, tables, report_path, time.monotonic() - started,
            verdict,
        )  # fmt: skip
    finally:
        if broker is not None:
            say("the local Kafka broker keeps running (stop it with `webhouse kafka down`)")


async def send(
    simulation: Simulation,
    url: str,
    settings: Settings,
    rate: float,
    max_retries: int | None = None,
    sent_at: bool = True,
) -> SendReport:
    """The simulation through the collector as an SDK sends it: batches, retried until answered."""
    sim = settings.simulate
    policy = SendPolicy(
        url=url,
        write_key=sim.write_key,
        rate=rate,
        batch_size=sim.batch_size,
        concurrency=sim.concurrency,
        timeout_s=sim.request_timeout_s,
        max_retries=sim.max_retries if max_retries is None else max_retries,
        sent_at=sent_at,
    )
    last = [0.0]

    def progress(sent: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 5 or sent == total:
            last[0] = now
            say(f"  sending: {sent:,}/{total:,} events")

    return await send_events(simulation.events, policy, progress)
