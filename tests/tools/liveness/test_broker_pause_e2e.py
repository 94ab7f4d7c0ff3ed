"""The whole stack through a 20 s broker pause: every service lands again within 60 s, or restarts.

The demo's services (``tools.demo.run.start_services``: collector, worker, sink, and the triggers
in the worker's process or as ``webhouse triggers run``) run on a broker of their own, under the
chaos ``Stack``'s supervisor, which restarts a service that exits by itself at once, as systemd
would. The first half of a simulated shop's traffic is sent and landed; the broker is frozen
(SIGSTOP) for 20 s, longer than every consumer group's session timeout, so each service has to
rejoin its group after the resume (what once left the sink alive in an empty group, landing
nothing); then the second half is sent, with the end of input, and the resume starts the clock.

Within 60 s of the resume every service has read everything it consumes; or a service restarted
within them (its liveness exit) and everything is read within 60 s of that restart. So the worker's
sessions and identity links, the triggers' profiles and alerts and the sink's tables moved on. Every
acknowledged event is in ``events`` exactly once, no table holds a row twice nor two rows with
one natural id (profile versions by (customer_id, version)), orders, dead letters and cart alerts
are the ground truth's. Each service is then either still running or exited with the liveness code (3)
and was restarted. The stall bound is 30 s (longer than the pause, so the pause alone is no stall)
and a stalled loop gets 10 s to end before the process exits: a stuck service restarts within
40 s of its last turn, inside the 60 s (the defaults, 120 s and 25 s, are for production).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.health import EXIT_STALLED
from pipeline.kafka_admin import ensure_topics
from pipeline.runtime.control import send_end_of_input
from pipeline.runtime.progress import unprocessed
from pipeline.settings import Settings, load_settings
from pipeline.topics import Topics
from tools.chaos.compare import landed_ids, snapshots
from tools.chaos.plan import BROKER, Fault
from tools.chaos.run import truth_verdict as ground_truth
from tools.chaos.stack import Stack
from tools.demo.run import (
    child_env,
    consumer_groups,
    run_settings,
    send,
    simulation_config,
    start_services,
    wait_queryable,
)
from tools.demo.services import ServiceError, ServiceGroup
from tools.simulate.generate import Simulation, generate

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

PREFIX = "liveness"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)  # the simulated "now": with the seed, the same traffic each run
PAUSE_S = 20.0
LAND_WITHIN_S = 60.0  # the spec: after the resume, every service lands again within this
STALL_AFTER_S = 30  # health.stall_after_s: see the module docstring
STOP_WITHIN_S = 10  # health.stop_within_s, also how long a stalled loop gets to end before exit 3
SESSION_TIMEOUT_S = 6  # the worker's group session timeout (the sink's is 10 s): both below the pause
# The tables each half of the traffic must add rows to: the sink's own, the worker's, the triggers'.
MOVING = ("events", "sessions", "identity_map", "profiles_history", "alerts")


@dataclasses.dataclass
class Running:
    stack: Stack
    group: ServiceGroup
    settings: Settings  # the parent's view of the children's settings
    simulation: Simulation


@pytest.fixture(params=[False, True], ids=["triggers-in-worker", "triggers-apart"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    settings = load_settings()
    simulation = generate(simulation_config(settings, seed=11, customers=30, days=8, now=NOW))
    with Stack(tmp_path) as stack:
        stack.up()
        base = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": stack.bootstrap})}
        )
        env = child_env(base, PREFIX, (tmp_path / "tables").resolve(), stack.collector_port)
        env.update(
            {
                "WEBHOUSE_HEALTH__STALL_AFTER_S": str(STALL_AFTER_S),
                "WEBHOUSE_HEALTH__STOP_WITHIN_S": str(STOP_WITHIN_S),
                "WEBHOUSE_WORKER__GROUP_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
            }
        )
        run = run_settings(base, PREFIX, env)
        ensure_topics(
            stack.bootstrap, Topics.from_settings(run.kafka).specs(), settings.kafka.replication_factor
        )
        with ServiceGroup(env=env, log_dir=tmp_path / "logs") as group:
            start_services(group, stack.collector_url, separate_triggers=request.param)
            stack.supervise(group)
            try:
                yield Running(stack, group, run, simulation)
            finally:
                stack.stop_supervising()


def _send(running: Running, half: Simulation) -> int:
    report = asyncio.run(
        send(half, running.stack.collector_url, running.settings, rate=600, max_retries=60, sent_at=False)
    )
    return report.accepted


def _print_log_tails(running: Running) -> None:
    """Each service's last lines, to the captured output: a CI log keeps only its own tail."""
    for service in running.group.services:
        print(f"--- {service.name} (started {service.starts} times):\n{service.log_tail(15)}")


def _groups_in_flow_order(settings: Settings) -> dict[str, list[str]]:
    """The worker, the trigger stages, then the sink: checked in this order, a group found caught
    up has already read what the groups before it wrote (outputs commit with their offsets)."""
    groups = consumer_groups(settings)
    sink = settings.webhouse.consumer_group
    return {**{g: t for g, t in groups.items() if g != sink}, sink: groups[sink]}


def _behind(settings: Settings) -> list[str]:
    bootstrap = settings.kafka.bootstrap_servers
    return [g for g, topics in _groups_in_flow_order(settings).items() if unprocessed(bootstrap, g, topics)]


def _deadline(restarted: dict[str, float]) -> float:
    """Seconds after the resume by which every group must be caught up: ``LAND_WITHIN_S``, or as
    long after the last restart within them (a service's own, or one it reads from)."""
    early = [at for at in restarted.values() if at <= LAND_WITHIN_S]
    return max([0.0, *early]) + LAND_WITHIN_S


def _wait_landed(
    running: Running, resumed: float, starts: dict[str, int]
) -> tuple[list[str], dict[str, float]]:
    """Until no group is behind, or past ``_deadline`` (``starts``: each service's starts before
    the pause). Returns the groups still behind and when (s after the resume) each service was
    first seen restarted."""
    restarted: dict[str, float] = {}
    while True:
        running.stack.check()
        now = time.monotonic() - resumed
        for service in running.group.services:
            if service.starts > starts[service.name]:
                restarted.setdefault(service.name, now)
        behind = _behind(running.settings)
        if not behind or now > _deadline(restarted):
            return behind, restarted
        time.sleep(1.0)


def test_every_service_lands_again_within_60s_of_a_20s_broker_pause(running: Running) -> None:
    stack, settings, simulation = running.stack, running.settings, running.simulation
    tables = Path(settings.webhouse.root)
    raw_topic = Topics.from_settings(settings.kafka).raw_events
    middle = len(simulation.events) // 2
    first = dataclasses.replace(simulation, events=simulation.events[:middle])
    second = dataclasses.replace(simulation, events=simulation.events[middle:])

    accepted = _send(running, first)
    try:
        wait_queryable(settings, accepted, consumer_groups(settings), stack.check, settle_s=3, timeout_s=180)
    except ServiceError:
        _print_log_tails(running)
        raise
    before = {name: snap.count for name, snap in snapshots(tables).items()}
    assert all(before[t] > 0 for t in ("events", "sessions", "identity_map", "profiles_history")), before

    starts = {s.name: s.starts for s in running.group.services}
    stack.inject(Fault(0.0, BROKER, "pause", PAUSE_S))  # SIGSTOP, 20 s, SIGCONT
    resumed = time.monotonic()
    accepted += _send(running, second)
    send_end_of_input(stack.bootstrap, raw_topic)
    behind, restarted = _wait_landed(running, resumed, starts)
    landed_s = time.monotonic() - resumed
    logs = {s.name: s.log_tail(30) for s in running.group.services}
    assert behind == [], (
        f"still behind {landed_s:.0f}s after the resume: {behind}; restarted {restarted}; {logs}"
    )

    after = snapshots(tables)
    expected = {e.body["messageId"] for e in simulation.events if e.malformed is None}
    landed = landed_ids(tables)
    assert len(expected) == accepted
    lost, foreign = expected - set(landed), set(landed) - expected
    assert (sorted(lost)[:5], sorted(foreign)[:5]) == ([], [])
    assert {m: n for m, n in landed.items() if n > 1} == {}
    assert {
        name: snap.count - len(snap.rows) for name, snap in after.items() if snap.count > len(snap.rows)
    } == {}
    assert {name: snap.duplicated for name, snap in after.items() if snap.duplicated} == {}
    assert {t: (before[t], after[t].count) for t in MOVING if after[t].count <= before[t]} == {}
    assert ground_truth(settings, simulation) == {  # the chaos run's check: every count of wrong rows
        "orders_wrong": 0, "dead_letters_wrong": 0, "cart_alerts_false": 0, "cart_alerts_missed": 0,
        "alerts_without_consent": 0,
    }  # fmt: skip
    for service in running.group.services:
        assert service.process is not None and service.process.poll() is None, f"{service.name} is down"
    exits = stack.exit_codes  # by service: the codes of the exits the supervisor restarted
    assert all(code == EXIT_STALLED for codes in exits.values() for code in codes), exits
    print(f"landed {landed_s:.0f}s after the resume; restarted (s after the resume): {restarted}")
