"""Workers joining and leaving under traffic, on the 3-node cluster: nothing lost, nothing twice.

The whole stack by its real commands (collector, `webhouse worker`, `webhouse sink`) on the
package's cluster. A second and a third worker join the first (each waited for until it owns
partitions, so every join is a rebalance of its own), then the second is stopped with SIGTERM
(it leaves the group at its next batch boundary); a third of the traffic is sent during each of
these steps: each begins once that part's first events are on the raw topic, the rest to come.
The partitions and the state behind them (sessions, identity, profiles) move each time: the
first worker counts every revocation. Then what landed is held against the simulator's ground
truth: every acknowledged event once, each order with its revenue, the dead letters, the cart
alerts, and the identity links the events carry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_cluster import LocalCluster
from pipeline.kafka_local import free_port
from pipeline.runtime.control import send_end_of_input
from pipeline.runtime.progress import unprocessed
from pipeline.settings import load_settings
from pipeline.topics import Topics
from sinks.duck import connect
from tools.chaos.compare import landed_ids, snapshots
from tools.chaos.rebalances import RebalanceCount
from tools.chaos.run import truth_verdict
from tools.chaos.stack import start_collector, start_worker
from tools.demo.run import (
    child_env,
    consumer_groups,
    http_ok,
    run_settings,
    send,
    simulation_config,
    wait_queryable,
)
from tools.demo.services import Service, ServiceError, ServiceGroup
from tools.simulate.generate import Simulation, generate
from tools.simulate.sender import SendReport

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(420)]

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RATE = 30.0  # events/s: a third of the traffic (~13 s) is sent during each join and the leave


@dataclass
class Elastic:
    simulation: Simulation
    accepted: int
    tables: Path
    truth: dict[str, Any]
    identity: set[tuple[str, str]]
    unsettled: str | None
    traffic_flowing: dict[str, bool]  # step -> was its part of the traffic arriving when it began
    left_with: int | None  # the SIGTERMed worker's exit code
    revocations_first_worker: int


def _chunks(simulation: Simulation, n: int) -> list[Simulation]:
    """The traffic in ``n`` consecutive parts, one sent during each step."""
    size = -(-len(simulation.events) // n)
    return [
        dataclasses.replace(simulation, events=simulation.events[i : i + size])
        for i in range(0, len(simulation.events), size)
    ]


def _raw_records(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"elastic-probe-{uuid.uuid4().hex[:6]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        )
    finally:
        consumer.close()


def _ready(service: Service) -> bool:
    return http_ok(f"http://127.0.0.1:{service.env['WEBHOUSE_METRICS__PORT']}/health/ready")


def _join(group: ServiceGroup, name: str) -> Service:
    worker = start_worker(group, name)
    group.wait_until(worker, lambda: _ready(worker), 120, "owning partitions")
    return worker


@pytest.fixture(scope="module")
def elastic(kafka_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Elastic:
    workdir = tmp_path_factory.mktemp("elastic")
    settings = load_settings()
    base = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_cluster.bootstrap})}
    )
    prefix = f"elastic-{uuid.uuid4().hex[:6]}"
    collector_port = free_port()
    url = f"http://127.0.0.1:{collector_port}"
    env = child_env(base, prefix, (workdir / "tables").resolve(), collector_port)
    env["WEBHOUSE_WORKER__GROUP_SESSION_TIMEOUT_S"] = "6"
    run = run_settings(base, prefix, env)
    topics = Topics.from_settings(run.kafka)
    ensure_topics(kafka_cluster.bootstrap, topics.specs(), settings.kafka.replication_factor)
    simulation = generate(simulation_config(settings, seed=17, customers=40, days=5, now=NOW))
    flowing: dict[str, bool] = {}
    with ServiceGroup(env=env, log_dir=workdir / "logs") as group:
        start_collector(group, url)
        first = _join(group, "worker-1")
        group.start("sink", "sink", extra_env={"WEBHOUSE_METRICS__PORT": str(free_port())})
        sent: list[SendReport] = []
        left: list[int] = []

        def leave() -> None:
            second = group.named("worker-2")
            assert second.process is not None
            second.process.send_signal(signal.SIGTERM)
            left.append(second.process.wait(timeout=60))
            group.services.remove(second)  # stopped for good: not a service that died

        steps = {
            "worker-2 joined": lambda: _join(group, "worker-2"),
            "worker-3 joined": lambda: _join(group, "worker-3"),
            "worker-2 left": leave,
        }
        for (name, step), chunk in zip(steps.items(), _chunks(simulation, len(steps)), strict=True):
            traffic = threading.Thread(
                target=lambda c=chunk: sent.append(asyncio.run(send(c, url, run, RATE, sent_at=False))),
                name="traffic",
            )
            produced = _raw_records(kafka_cluster.bootstrap, topics.raw_events)
            traffic.start()
            deadline = time.monotonic() + 60
            while _raw_records(kafka_cluster.bootstrap, topics.raw_events) == produced:
                assert time.monotonic() < deadline, "no event reached the raw topic in 60 s"
                time.sleep(0.2)
            flowing[name] = traffic.is_alive()  # events arriving, more to come: the step runs under traffic
            step()
            traffic.join(timeout=300)
        send_end_of_input(kafka_cluster.bootstrap, topics.raw_events)
        groups = consumer_groups(run)
        try:
            wait_queryable(run, sum(r.accepted for r in sent), groups, group.check_alive, 6, 120)
            unsettled = None
        except ServiceError as exc:  # reported by a test of its own, with what is left to process
            lag = {g: unprocessed(kafka_cluster.bootstrap, g, t) for g, t in groups.items()}
            unsettled = f"{exc}; records left per group: {lag}"
        revocations = RebalanceCount()
        assert first.process is not None and first.process.poll() is None
        revocations.scrape(first.name, first.starts, int(first.env["WEBHOUSE_METRICS__PORT"]))
    con = connect(run)
    try:
        identity = set(con.execute("SELECT anonymous_id, customer_id FROM identity_map").fetchall())
    finally:
        con.close()
    return Elastic(
        simulation, sum(r.accepted for r in sent), Path(run.webhouse.root), truth_verdict(run, simulation),
        identity, unsettled, flowing, left[0], revocations.by_stage()["worker"],
    )  # fmt: skip


def test_workers_joined_and_left_while_the_traffic_flowed(elastic: Elastic) -> None:
    assert elastic.traffic_flowing == {
        "worker-2 joined": True,
        "worker-3 joined": True,
        "worker-2 left": True,
    }
    assert elastic.left_with == 0  # a clean stop: it left the group at a batch boundary


def test_the_stack_settled(elastic: Elastic) -> None:
    """Every stage caught up after the last worker left: nothing stuck on a moved partition."""
    assert elastic.unsettled is None


def test_the_partitions_moved_at_each_join_and_leave(elastic: Elastic) -> None:
    """Eager rebalancing: every member gives all its partitions back at each change of the group."""
    assert elastic.revocations_first_worker >= 3


def test_every_acknowledged_event_landed_once(elastic: Elastic) -> None:
    expected = {e.body["messageId"] for e in elastic.simulation.events if e.malformed is None}
    assert elastic.accepted == len(expected)
    landed = landed_ids(elastic.tables)
    assert set(landed) == expected
    assert [i for i, n in landed.items() if n > 1] == []
    assert {t: s.duplicated for t, s in snapshots(elastic.tables).items() if s.duplicated} == {}


def test_orders_dead_letters_and_alerts_match_the_ground_truth(elastic: Elastic) -> None:
    assert elastic.truth == {
        "orders_wrong": 0, "dead_letters_wrong": 0, "cart_alerts_false": 0, "cart_alerts_missed": 0,
        "alerts_without_consent": 0,
    }  # fmt: skip


def test_identity_links_are_those_the_events_carry(elastic: Elastic) -> None:
    """Each device linked to each customer who signed in on it, as the simulator sent them."""
    carried = Counter(
        (e.body["anonymousId"], e.body["userId"])
        for e in elastic.simulation.events
        if e.malformed is None and e.body.get("anonymousId") and e.body.get("userId")
    )
    assert elastic.identity == set(carried)
