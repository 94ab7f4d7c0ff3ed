"""`webhouse load-uci`: produce the UCI Online Retail invoices as order events to the raw topic."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from pipeline.errors import ProduceError
from pipeline.serde import make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics
from tools.uci import invoices, read_rows


def _load_uci(args: argparse.Namespace, settings: Settings) -> int:
    topic = Topics.from_settings(settings.kafka).raw_events
    serde = make_serde("customer_event", settings.kafka.schema_registry_url)
    producer = Producer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 20, "compression.type": "zstd"}
    )
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    events = invoices(read_rows(Path(args.path)))
    if args.limit:
        events = itertools.islice(events, args.limit)
    count = 0
    for record in events:
        key = (record["user_id"] or record["anonymous_id"]).encode()
        while True:
            try:
                producer.produce(topic, serde.encode(record, topic), key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.5)
        count += 1
    if producer.flush(60) or failures:
        raise ProduceError(f"{len(failures)} invoices not acknowledged: {failures[:3]}")
    print(f"produced {count} invoices to {topic}")
    return 0


def register(sub: Any) -> None:
    uci = sub.add_parser(
        "load-uci", help="produce the UCI Online Retail invoices as order events (raw topic)"
    )
    uci.add_argument(
        "--path", type=Path, required=True, help="the data set's gzipped CSV (online-retail.csv.gz)"
    )
    uci.add_argument("--limit", type=int, default=0, help="only the first N invoices")
    uci.set_defaults(func=_load_uci)
