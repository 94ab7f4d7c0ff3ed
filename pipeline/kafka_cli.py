"""`webhouse kafka up | down | status`: the project's own local broker."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka
from pipeline.runtime.control import send_end_of_input
from pipeline.settings import Settings
from pipeline.topics import Topics


def _broker(args: argparse.Namespace, settings: Settings) -> LocalKafka:
    kafka = settings.kafka
    if args.data_dir is not None:
        kafka = kafka.model_copy(update={"local_data_dir": args.data_dir})
    return LocalKafka.from_settings(kafka)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    broker = _broker(args, settings)
    status = broker.up()
    topics = Topics.from_settings(settings.kafka)
    created = ensure_topics(broker.bootstrap, topics.specs(), settings.kafka.replication_factor)
    print(f"Kafka {broker.version} running (pid {status.pid}), data in {broker.data_dir}")
    print(f"bootstrap: {broker.bootstrap}")
    print(f"topics: {len(topics.specs())} ensured, {len(created)} created")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = _broker(args, settings).down()
    print("Kafka stopped" if stopped else "Kafka was not running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    status = _broker(args, settings).status()
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
    kafka = sub.add_parser("kafka", help="run a local single-node Apache Kafka (KRaft) from its jars")
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
