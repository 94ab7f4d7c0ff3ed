"""The simulator through the real collector onto the real broker: every valid event lands on
the raw topic, each partition in event-time order; every malformed one is a dead letter with
the reason its kind names."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import cast

import pytest

from pipeline.collector.server import ThreadedCollector
from pipeline.serde import SingleObjectSerde
from pipeline.settings import CollectorSettings, KafkaSettings, Settings
from pipeline.topics import Topics
from tests.pipeline.collector.kafka_read import read_topic
from tests.tools.simulate.conftest import small_config
from tools.simulate import generate
from tools.simulate.sender import SendPolicy, send_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KEY = "sim-write-key"


def test_simulated_stream_lands_in_order_and_malformed_events_are_dead_letters(
    kafka_settings: KafkaSettings,
) -> None:
    sim = generate(small_config(seed=11, customers=60, malformed=10, bots=2))
    settings = Settings(
        kafka=kafka_settings, collector=CollectorSettings(port=0, write_keys={KEY: "simulator"})
    )
    with ThreadedCollector(settings) as collector:
        policy = SendPolicy(url=collector.url, write_key=KEY, batch_size=200, gzip=True)
        report = asyncio.run(send_events(sim.events, policy))
    valid = [e for e in sim.events if e.malformed is None]
    assert report.accepted == len(valid) and report.refused == 10 and report.retries == 0

    topics = Topics.from_settings(kafka_settings)
    serde = SingleObjectSerde("customer_event")
    messages = read_topic(kafka_settings.bootstrap_servers, topics.raw_events, len(valid))
    records = [(cast(int, m.partition()), serde.decode(cast(bytes, m.value()))) for m in messages]
    assert sorted(r["message_id"] for _, r in records) == sorted(e.body["messageId"] for e in valid)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, record in records:  # read in offset order per partition
        by_partition[partition].append(record["timestamp"])
    assert all(times == sorted(times) for times in by_partition.values())

    letters_serde = SingleObjectSerde("dead_letter")
    letters = [
        letters_serde.decode(cast(bytes, m.value()))
        for m in read_topic(kafka_settings.bootstrap_servers, topics.dead_letters, 10)
    ]
    assert {letter["message_id"]: letter["reason"] for letter in letters} == sim.truth.malformed_message_ids
