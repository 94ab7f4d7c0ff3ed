"""Both runs of `webhouse chaos` and their report.

Each run gets a directory of its own (broker data, tables, logs) and the same simulated
traffic (same seed, same simulated "now"). The undisturbed run goes first; the chaos run
injects the planned faults while the traffic is sent and processed, and only then sends the
end of input and waits until the webhouse is settled (the same wait as the demo's). The
client is the simulator's sender, which retries a batch until the collector acknowledges it.

The trigger stages run in the worker's process as in the demo, so a worker kill kills them too;
``separate_triggers`` runs them as ``webhouse triggers run`` and kills that process on its own.

Scaled out (``brokers`` > 1, ``workers`` > 1, ``sinks`` > 1): the run's Kafka is a
``LocalCluster`` (replication 3, ``min.insync.replicas`` 2 from three nodes), shared by both
runs under topic prefixes of their own (the undisturbed run is over before a node dies); a
broker fault pauses or kills one node drawn from the schedule, and each worker and sink
process is a target of its own. Rebalances are counted from the services' own counters
(``tools.chaos.rebalances``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import WebhouseError
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_cluster import LocalCluster
from pipeline.runtime.control import send_end_of_input
from pipeline.settings import Settings
from pipeline.topics import Topics
from sinks.duck import connect
from tools.chaos.compare import Snapshot, TableDiff, diff, landed_ids, raw_copies, snapshots
from tools.chaos.plan import BROKER, Fault, plan_faults, service_names
from tools.chaos.stack import Stack, start_scaled_services
from tools.demo.alert_truth import compare as alert_verdict
from tools.demo.run import (
    child_env,
    consumer_groups,
    run_settings,
    say,
    send,
    simulation_config,
    start_services,
    wait_queryable,
)
from tools.demo.services import ServiceError, ServiceGroup
from tools.simulate.generate import Simulation, generate
from tools.simulate.sender import SendReport

log = logging.getLogger(__name__)

PREFIX = "webhouse-chaos"


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    workdir: Path
    kills: int
    seed: int
    customers: int = 60
    days: float = 10.0
    rate: float = 150.0  # slow enough that the faults land while traffic flows
    dedupe: bool = True
    tail_s: float = 10.0  # faults keep coming this long after the last batch is sent
    max_pause_s: float = 8.0
    settle_s: float = 8.0
    timeout_s: float = 240.0  # a stack that has not settled by then is stuck: reported, not waited for
    max_retries: int = 60  # per batch: a client outlasting any planned fault
    separate_triggers: bool = False  # the demo's layout (triggers in the worker's App) by default
    now: datetime | None = None  # the simulated "now" (with the seed, it fixes the traffic); None: now
    brokers: int = 1  # > 1: a local cluster of that many nodes
    workers: int = 1  # worker processes in one consumer group
    sinks: int = 1  # sink processes in one consumer group

    @property
    def scaled(self) -> bool:
        return self.workers > 1 or self.sinks > 1


@dataclass(slots=True)
class RunOutcome:
    name: str
    send: SendReport
    tables: dict[str, Snapshot]
    landed: Counter[str]
    truth: dict[str, Any]
    faults: Counter[str] = field(default_factory=Counter)
    unexpected_exits: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    raw_copies: int = 0  # records on the raw topic beyond one per message id (client retries)
    unsettled: str | None = None  # why the run never settled (a stuck stage); its tables are compared anyway
    rebalances: Counter[str] = field(default_factory=Counter)  # members' revocations, by stage
    wall_s: float = 0.0
    fault_errors: list[str] = field(default_factory=list)  # faults that could not be carried out

    @property
    def faults_accounted(self) -> int:
        """Planned faults done or skipped (a target not back in time); fewer than planned means the
        schedule stopped short, and the run proves less than it says."""
        return sum(self.faults.values()) + sum(self.skipped.values())


@dataclass(frozen=True, slots=True)
class ChaosReport:
    options: ChaosOptions
    now: datetime
    faults: list[Fault]
    baseline: RunOutcome
    chaos: RunOutcome
    expected_ids: frozenset[str]
    differing: list[TableDiff]

    @property
    def lost(self) -> int:
        return len(self.expected_ids - set(self.chaos.landed))

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.chaos.tables.values())

    @property
    def passed(self) -> bool:
        settled = self.baseline.unsettled is None and self.chaos.unsettled is None
        faulted = self.chaos.faults_accounted == len(self.faults) and not self.chaos.fault_errors
        return settled and faulted and self.lost == 0 and self.duplicated == 0 and not self.differing

    def to_json(self) -> dict[str, Any]:
        opts = self.options
        return {
            "seed": opts.seed,
            "now": self.now.isoformat(),  # replay: --seed S --now NOW --kills N
            "kills_requested": opts.kills,
            "dedupe": opts.dedupe,
            "triggers": "separate" if opts.separate_triggers else "in the worker",
            "brokers": opts.brokers,
            "workers": opts.workers,
            "sinks": opts.sinks,
            "kills": {label: self.chaos.faults[label] for label in sorted(self.chaos.faults)},
            "kills_skipped": dict(self.chaos.skipped),  # the target did not come back in time
            "kills_not_done": len(self.faults) - self.chaos.faults_accounted,  # the schedule stopped short
            "fault_errors": self.chaos.fault_errors,  # e.g. a killed node that did not start again
            "unexpected_exits": dict(self.chaos.unexpected_exits),
            "faults": [f.to_json() for f in self.faults],
            "acknowledged": self.chaos.send.accepted,
            "acknowledged_baseline": self.baseline.send.accepted,
            "client_retries": self.chaos.send.retries,
            "raw_copies": self.chaos.raw_copies,  # duplicates the collector took in (client retries)
            "lost": self.lost,
            "lost_baseline": len(self.expected_ids - set(self.baseline.landed)),
            "duplicated": self.duplicated,
            "duplicated_by_table": {n: s.duplicated for n, s in self.chaos.tables.items() if s.duplicated},
            "duplicated_baseline": sum(s.duplicated for s in self.baseline.tables.values()),
            "tables_differing": [d.table for d in self.differing],
            "table_diffs": {d.table: d.to_json() for d in self.differing},
            "rows": {n: [self.baseline.tables[n].count, s.count] for n, s in self.chaos.tables.items()},
            "truth": {"baseline": self.baseline.truth, "chaos": self.chaos.truth},
            "wall_s": {"baseline": round(self.baseline.wall_s, 1), "chaos": round(self.chaos.wall_s, 1)},
            "unsettled": {r.name: r.unsettled for r in (self.baseline, self.chaos) if r.unsettled},
            "rebalances": sum(self.chaos.rebalances.values()),
            "rebalances_by_stage": dict(sorted(self.chaos.rebalances.items())),
            "rebalances_baseline": sum(self.baseline.rebalances.values()),
            "passed": self.passed,
        }


def truth_verdict(settings: Settings, simulation: Simulation) -> dict[str, Any]:
    """The run's tables against the simulator's ground truth: orders, dead letters, alerts."""
    con = connect(settings)
    try:
        orders = dict(
            con.execute(
                "SELECT order_id, round(any_value(order_revenue), 2) FROM orders "
                "WHERE kind = 'completed' GROUP BY order_id"
            ).fetchall()
        )
        letters = dict(
            con.execute("SELECT message_id, reason FROM dead_letters WHERE stage = 'collector'").fetchall()
        )
        verdict = alert_verdict(con, simulation.truth, simulation.events, settings.triggers.absence_grace_s)
    finally:
        con.close()
    truth_orders = {o.order_id: round(o.revenue_cents / 100, 2) for o in simulation.truth.orders}
    return {
        "orders_wrong": len(set(truth_orders.items()) ^ set(orders.items())),
        "dead_letters_wrong": len(set(simulation.truth.malformed_message_ids.items()) ^ set(letters.items())),
        "cart_alerts_false": len(verdict.false_alarms),
        "cart_alerts_missed": len(verdict.misses),
        "alerts_without_consent": len(verdict.consent_violations),
    }


def _inject_all(stack: Stack, faults: list[Fault], started: float, done: threading.Event) -> None:
    """Every planned fault in turn. One that cannot be carried out (a node that does not come
    back) is a finding for the report, not the end of the schedule: the rest still come."""
    for fault in faults:
        delay = started + fault.at_s - time.monotonic()
        if delay > 0 and done.wait(delay):
            return
        try:
            stack.inject(fault)
        except WebhouseError as exc:
            log.error("fault %s at %.1fs failed: %s", fault.label, fault.at_s, exc)
            stack.fault_errors.append(f"{fault.label} at {fault.at_s:.1f}s: {str(exc).splitlines()[0]}")


def _traffic(
    name: str, opts: ChaosOptions, run: Settings, simulation: Simulation, faults: list[Fault], stack: Stack
) -> RunOutcome:
    """Send the traffic while the faults are injected; then the end of input, and the wait."""
    say(f"{name}: stack up; sending {len(simulation.events):,} events")
    done = threading.Event()
    chaos = threading.Thread(
        target=_inject_all, args=(stack, faults, time.monotonic(), done), name="chaos", daemon=True
    )
    chaos.start()
    try:
        report = asyncio.run(
            send(simulation, stack.collector_url, run, opts.rate, opts.max_retries, sent_at=False)
        )
        say(f"{name}: sent; acknowledged {report.accepted:,} after {report.retries} retries")
        chaos.join()
    finally:
        done.set()
    topics = Topics.from_settings(run.kafka)
    send_end_of_input(stack.bootstrap, topics.raw_events)
    groups = consumer_groups(run, separate_triggers=opts.separate_triggers)
    unsettled = None
    try:
        wait_queryable(run, report.accepted, groups, stack.check, opts.settle_s, opts.timeout_s)
    except ServiceError as exc:  # a stage stuck (or crash-looping) is a finding, not the end of the report
        unsettled = str(exc)
        log.error("%s did not settle: %s", name, exc)
    stack.scrape()
    tables = Path(run.webhouse.root)
    return RunOutcome(
        name, report, snapshots(tables), landed_ids(tables), truth_verdict(run, simulation),
        Counter(stack.faults), Counter(stack.unexpected), Counter(stack.skipped),
        raw_copies(stack.bootstrap, topics.raw_events, run.kafka.schema_registry_url), unsettled,
        stack.rebalances.by_stage(), fault_errors=list(stack.fault_errors),
    )  # fmt: skip


def run_once(
    name: str,
    opts: ChaosOptions,
    settings: Settings,
    simulation: Simulation,
    faults: list[Fault],
    cluster: LocalCluster | None = None,
) -> RunOutcome:
    """One run on a broker of its own, or on ``cluster`` under topics and groups of its own."""
    started = time.monotonic()
    workdir = opts.workdir / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    prefix = PREFIX if cluster is None else f"{PREFIX}-{name}"
    with Stack(workdir, cluster) as stack:
        stack.up()
        base = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": stack.bootstrap})}
        )
        tables = (workdir / "tables").resolve()
        env = child_env(base, prefix, tables, stack.collector_port)
        env.update(
            {
                # A killed worker's partitions move after this, not after the default 30 s.
                "WEBHOUSE_WORKER__GROUP_SESSION_TIMEOUT_S": "6",
                "WEBHOUSE_WEBHOUSE__DEDUPE_IDS": "true" if opts.dedupe else "false",
            }
        )
        run = run_settings(base, prefix, env)
        topics = Topics.from_settings(run.kafka)
        ensure_topics(stack.bootstrap, topics.specs(), settings.kafka.replication_factor)
        with ServiceGroup(env=env, log_dir=workdir / "logs") as group:
            if opts.scaled:
                start_scaled_services(
                    group, stack.collector_url, opts.workers, opts.sinks, opts.separate_triggers
                )
            else:
                start_services(group, stack.collector_url, separate_triggers=opts.separate_triggers)
            stack.supervise(group)
            if opts.scaled:  # the groups formed first: a fault then moves partitions between members
                stack.wait_ready()
            try:
                outcome = _traffic(name, opts, run, simulation, faults, stack)
            finally:
                stack.stop_supervising()
    outcome.wall_s = time.monotonic() - started
    return outcome


def run_chaos(opts: ChaosOptions, settings: Settings) -> ChaosReport:
    now = opts.now or datetime.now(UTC).replace(microsecond=0)
    simulation = generate(simulation_config(settings, opts.seed, opts.customers, opts.days, now))
    send_s = len(simulation.events) / opts.rate if opts.rate > 0 else 5.0
    targets = (*service_names(opts.workers, opts.sinks, opts.separate_triggers), BROKER)
    faults = plan_faults(opts.seed, opts.kills, send_s + opts.tail_s, targets, opts.max_pause_s, opts.brokers)
    layout = f"{opts.brokers} broker(s), {opts.workers} worker(s), {opts.sinks} sink(s)"
    say(
        f"chaos: {layout}; {len(simulation.events):,} events ({opts.customers} people, {opts.days:g} days), "
        f"{len(faults)} faults over {send_s + opts.tail_s:.0f}s, seed {opts.seed}, "
        f"sink id-dedupe {'on' if opts.dedupe else 'OFF'}"
    )
    cluster = None  # one for both runs: the undisturbed one is over before a node dies
    if opts.brokers > 1:
        shutil.rmtree(opts.workdir / "kafka", ignore_errors=True)  # a last run's layout and ports
        cluster = LocalCluster.ephemeral(opts.workdir / "kafka", opts.brokers)
    try:
        if cluster is not None:
            cluster.up()
        baseline = run_once("baseline", opts, settings, simulation, [], cluster)
        chaos = run_once("chaos", opts, settings, simulation, faults, cluster)
    finally:
        if cluster is not None:
            cluster.down()
    differing = [
        d for name in baseline.tables if (d := diff(baseline.tables[name], chaos.tables[name])) is not None
    ]
    expected = frozenset(e.body["messageId"] for e in simulation.events if e.malformed is None)
    for label in (*targets, "broker_pause", "broker_kill"):
        if label != BROKER:
            chaos.faults.setdefault(label, 0)
    return ChaosReport(opts, now, faults, baseline, chaos, expected, differing)
