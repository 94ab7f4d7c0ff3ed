"""`webhouse kafka up | down | status`: the project's own local broker, or cluster (``--brokers 3``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.errors import LocalKafkaError
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_cluster import ClusterStatus, LocalCluster
from pipeline.kafka_local import BrokerStatus, LocalKafka
from pipeline.runtime.control import send_end_of_input
from pipeline.settings import Settings
from pipeline.topics import Topics


def _broker(args: argparse.Namespace, settings: Settings) -> LocalKafka | LocalCluster:
    """The cluster when the data directory holds one (or ``--brokers`` > 1 asks for one), else the
    single broker."""
    kafka = settings.kafka
    if args.data_dir is not None:
        kafka = kafka.model_copy(update={"local_data_dir": args.data_dir})
    brokers = getattr(args, "brokers", None)
    data_dir = kafka.local_data_dir
    if not LocalCluster.is_cluster(data_dir) and (brokers or 1) == 1:
        return LocalKafka.from_settings(kafka)
    if (data_dir / "data").exists():
        raise LocalKafkaError(f"{data_dir} holds a single broker; use another --data-dir for a cluster")
    cluster = LocalCluster.from_settings(kafka, brokers or 3)
    if brokers is not None and brokers != len(cluster.nodes):
        raise LocalKafkaError(
            f"{data_dir} holds a cluster of {len(cluster.nodes)} nodes, not {brokers}; "
            "`webhouse kafka down` and remove it to change the size"
        )
    return cluster


def _up(args: argparse.Namespace, settings: Settings) -> int:
    broker = _broker(args, settings)
    status = broker.up()
    topics = Topics.from_settings(settings.kafka)
    created = ensure_topics(broker.bootstrap, topics.specs(), settings.kafka.replication_factor)
    if isinstance(broker, LocalCluster):
        _print_cluster(broker, broker.status())
        print(f"set WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS={broker.bootstrap} for the services")
    else:
        assert isinstance(status, BrokerStatus)
        print(f"Kafka {broker.version} running (pid {status.pid}), data in {broker.data_dir}")
        print(f"bootstrap: {broker.bootstrap}")
    print(f"topics: {len(topics.specs())} ensured, {len(created)} created")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = _broker(args, settings).down()
    print("Kafka stopped" if stopped else "Kafka was not running")
    return 0


def _print_cluster(cluster: LocalCluster, status: ClusterStatus) -> None:
    print(
        f"Kafka cluster of {len(cluster.nodes)} nodes (each broker and KRaft controller), "
        f"data in {cluster.data_dir}"
    )
    print(f"bootstrap: {cluster.bootstrap}")
    for node_id, node in status.nodes:
        state = "running" if node.running else "not running"
        seen = "in cluster" if node_id in status.brokers_seen else "not in cluster"
        print(f"  node {node_id}: {state:11} pid {node.pid or '-':>7}  {node.bootstrap}  {seen}")
    if status.under_replicated is None:
        print("under-replicated partitions: unknown (no node answers)")
        return
    print(f"under-replicated partitions: {len(status.under_replicated)}")
    for p in status.under_replicated:
        print(f"  {p.topic}[{p.partition}] leader {p.leader} replicas {p.replicas} in sync {p.isr}")


def _status(args: argparse.Namespace, settings: Settings) -> int:
    broker = _broker(args, settings)
    if isinstance(broker, LocalCluster):
        cluster = broker.status()
        _print_cluster(broker, cluster)
        return 0 if cluster.running and not cluster.under_replicated else 1
    status = broker.status()
    state = "running" if status.running else "not running"
    print(f"Kafka {state} (pid {status.pid}) at {status.bootstrap}, data in {status.data_dir}")
    return 0 if status.running else 1


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    topics = Topics.from_settings(settings.kafka)
    created = ensure_topics(
        settings.kafka.bootstrap_servers, topics.specs(), settings.kafka.replication_factor
    )
    for spec in topics.specs():
        mark = "created" if spec.name in created else "exists"
        print(f"{spec.name:40} {spec.partitions:3} partitions  {mark:8} {spec.doc}")
    return 0


def _end_of_input(args: argparse.Namespace, settings: Settings) -> int:
    topic = Topics.from_settings(settings.kafka).raw_events
    partitions = send_end_of_input(settings.kafka.bootstrap_servers, topic)
    print(f"end of input written to the {partitions} partitions of {topic}: the stages close what they hold")
    return 0


def register(sub: Any) -> None:
    kafka = sub.add_parser("kafka", help="run a local Apache Kafka (KRaft) from its jars, 1 or 3 brokers")
    actions = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, doc in (
        ("up", _up, "start (formatting storage the first time) and create the project's topics"),
        ("down", _down, "stop the local broker"),
        ("status", _status, "say whether the local broker runs and answers"),
        ("topics", _topics, "create the project's topics on the configured broker (any broker)"),
        (
            "end-of-input",
            _end_of_input,
            "after a backfill or test load: tell the stream stages no more events will come, so they "
            "close open sessions and absence windows instead of waiting for traffic",
        ),
    ):
        p = actions.add_parser(name, help=doc)
        p.add_argument("--data-dir", type=Path, default=None, help="overrides kafka.local_data_dir")
        p.set_defaults(func=func)
        if name == "up":
            p.add_argument(
                "--brokers",
                type=int,
                default=None,
                help="nodes of a local cluster (3: survives one lost broker); the data dir remembers it",
            )
