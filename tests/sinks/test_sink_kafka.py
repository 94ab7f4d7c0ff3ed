"""The sink on the real broker: every topic lands, a restart resumes from the tables, compaction alongside
and by the sink itself."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Producer

from pipeline.deadletter import DeadLetter
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, Settings, WebhouseSettings
from pipeline.topics import Topics
from sinks.duck import connect
from sinks.maintenance import compact
from sinks.metrics import SinkMetrics
from sinks.pii import PiiHasher
from sinks.runner import SinkRunner
from sinks.store import DeltaStore
from sinks.tables import build_tables, default_specs
from tools.records import T0, event, link, order, session

D = timedelta(days=1)


def _settings(kafka: KafkaSettings, root: Path, **webhouse: Any) -> Settings:
    cfg = WebhouseSettings(
        root=str(root),
        batch_max_rows=50,
        batch_max_seconds=0.2,
        consumer_group=f"sink-{kafka.topic_prefix}",  # one group per test: no waiting on others' members
        **webhouse,
    )
    return Settings(kafka=kafka, webhouse=cfg)


def _runner(settings: Settings, metrics: SinkMetrics | None = None) -> SinkRunner:
    tables = build_tables(PiiHasher(settings.webhouse.pii_hmac_secret), default_specs())
    return SinkRunner(settings, tables, metrics=metrics)


class Feed:
    def __init__(self, kafka: KafkaSettings) -> None:
        self.topics = Topics.from_settings(kafka)
        self.producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})

    def send(self, topic: str, schema: str, records: list[dict[str, Any]], key: str = "k") -> None:
        serde = SingleObjectSerde(schema)
        for r in records:
            self.producer.produce(topic, serde.encode(r, topic), key=key.encode())
        assert self.producer.flush(10) == 0


@pytest.mark.kafka
def test_every_topic_lands_once_and_a_restart_resumes_from_the_tables(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    feed = Feed(kafka_settings)
    t = feed.topics
    events = [
        event(f"e{i}", type="page", name="Home", path="/", anonymous_id="a1", session_id="s1", at=T0)
        for i in range(120)
    ]
    feed.send(t.enriched_events, "customer_event", [*events, events[3]])  # one upstream duplicate
    feed.send(t.enriched_events, "customer_event", [order("o", "o1", [("p", 2.0, 3)], user_id="u1")])
    feed.send(t.sessions, "session", [session("s1", "a1", T0, closed_by="inactivity")])
    feed.send(t.identity, "identity_link", [link("a1", "u1")])
    letter = DeadLetter("collector", "invalid_json", "x", b"{", T0, message_id="m")
    feed.send(t.dead_letters, "dead_letter", [letter.to_record()])
    feed.producer.produce(t.sessions, b"garbage", key=b"k")  # the sink's own dead letter
    feed.producer.flush(10)

    settings = _settings(kafka_settings, tmp_path)
    metrics = SinkMetrics()
    _runner(settings, metrics).run(exit_when_idle=True)

    con = connect(settings)
    tables = ("events", "orders", "sessions", "identity_map")
    counts = {name: con.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in tables}
    assert counts == {"events": 121, "orders": 1, "sessions": 1, "identity_map": 1}
    reasons = sorted(r[0] for r in con.sql("SELECT reason FROM dead_letters").fetchall())
    assert reasons == ["invalid_json", "undecodable"]
    assert con.sql("SELECT count(DISTINCT stitched_customer_id) FROM events_stitched").fetchall() == [(1,)]
    sample = metrics.registry.get_sample_value
    assert sample("webhouse_sink_rows_written_total", {"table": "events"}) == 121
    assert sample("webhouse_sink_duplicates_dropped_total", {"table": "events"}) == 1
    assert cast(float, sample("webhouse_sink_files_written_total", {"table": "events"})) >= 1
    assert cast(float, sample("webhouse_sink_commit_seconds_count", {"table": "events"})) >= 1
    assert sample("webhouse_sink_consumer_lag", {"table": "events", "partition": "0"}) == 0

    # A restart lands nothing twice; new records (and an old one again) land once.
    feed.send(t.enriched_events, "customer_event", [events[0], event("late", anonymous_id="a1", at=T0)])
    again = _runner(settings).run(exit_when_idle=True)
    assert again == 1
    assert connect(settings).sql("SELECT count(*) FROM events").fetchall() == [(122,)]


@pytest.mark.kafka
def test_compaction_while_the_sink_runs_loses_nothing(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    feed = Feed(kafka_settings)
    settings = _settings(kafka_settings, tmp_path)
    runner = _runner(settings)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    for _ in range(100):  # joining the group takes a few seconds
        if runner.assigned:
            break
        stop.wait(0.1)
    try:
        specs = [t.spec for t in runner.by_topic[feed.topics.enriched_events]]
        compactions = 0
        for chunk in range(8):
            batch = [event(f"c{chunk}-{i}", anonymous_id=f"a{i % 5}", at=T0) for i in range(60)]
            feed.send(feed.topics.enriched_events, "customer_event", batch, key=f"k{chunk}")
            stop.wait(0.3)
            compactions += sum(removed for removed, _ in compact(runner.store, specs).values())
    finally:
        stop.set()
        thread.join(30)
    final = _runner(settings)
    final.run(exit_when_idle=True)
    rows = connect(settings).sql("SELECT count(*), count(DISTINCT message_id) FROM events").fetchall()
    assert rows == [(480, 480)]
    assert compactions > 0


@pytest.mark.kafka
def test_a_backfill_ends_with_few_files_and_the_same_rows(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """A history replayed in order of customers, not days: every batch touches every day partition."""
    feed = Feed(kafka_settings)
    days = 30
    history = [event(f"e{i}", anonymous_id=f"a{i // days}", at=T0 + (i % days) * D) for i in range(600)]
    feed.send(feed.topics.enriched_events, "customer_event", history)
    settings = _settings(kafka_settings, tmp_path, compact_min_small_files=2)
    metrics = SinkMetrics()
    _runner(settings, metrics).run(exit_when_idle=True)

    written = metrics.registry.get_sample_value("webhouse_sink_files_written_total", {"table": "events"})
    assert written is not None and written >= 5 * days  # the batches landed many small files
    dt = DeltaStore(settings.webhouse).open("events")
    assert dt is not None and len(dt.file_uris()) == days  # compacted: one file per day partition
    rows = connect(settings).sql("SELECT count(*), count(DISTINCT message_id) FROM events").fetchall()
    assert rows == [(600, 600)]


@pytest.mark.kafka
def test_two_sinks_share_the_partitions_through_rebalances(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    feed = Feed(kafka_settings)
    settings = _settings(kafka_settings, tmp_path)
    sent = 0

    def produce(chunk: int) -> None:
        nonlocal sent
        for i in range(80):
            record = event(f"r{chunk}-{i}", anonymous_id=f"a{i % 7}", at=T0)
            feed.send(feed.topics.enriched_events, "customer_event", [record], key=f"a{i % 7}")
        sent += 80

    stops = [threading.Event(), threading.Event()]
    runners = [_runner(settings), _runner(settings)]
    threads = [threading.Thread(target=r.run, args=(s,)) for r, s in zip(runners, stops, strict=True)]

    def until(condition: Callable[[], bool]) -> None:
        for _ in range(300):
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError("rebalance did not happen")

    threads[0].start()
    until(lambda: bool(runners[0].assigned))
    produce(0)
    everything = set(runners[0].assigned)
    threads[1].start()  # joins: the first gives partitions away (flushing them first)
    until(lambda: bool(runners[1].assigned) and runners[0].assigned != everything)
    for chunk in range(1, 4):
        produce(chunk)
        time.sleep(0.5)
    stops[0].set()  # leaves: the second takes everything over
    threads[0].join(30)
    until(lambda: runners[1].assigned == everything)
    produce(4)
    time.sleep(1)
    stops[1].set()
    threads[1].join(30)
    _runner(settings).run(exit_when_idle=True)
    rows = connect(settings).sql("SELECT count(*), count(DISTINCT message_id) FROM events").fetchall()
    assert rows == [(sent, sent)]
    assert runners[0].landed_rows > 0 and runners[1].landed_rows > 0


@pytest.mark.kafka
def test_the_sink_collects_young_garbage_at_its_setting(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """``webhouse.gc_threshold``: the sink's process collects its young generation that seldom
    (a batch holds up to 50,000 decoded events; at Python's 700 the collections took 13-15% of it)."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        settings = _settings(kafka_settings, tmp_path, gc_threshold=12_345)
        _runner(settings).run(exit_when_idle=True, assign_all=True)
        assert gc.get_threshold() == (12_345, *before[1:])
    finally:
        gc.set_threshold(*before)
