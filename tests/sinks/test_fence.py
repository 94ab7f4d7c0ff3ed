"""Two sinks holding one partition for a moment (one stalled past its session while the group gave
the partition to the other) land its rows once, with the id-dedupe off: whichever commits second
finds the table's position past its own and lands nothing there (``sinks.store.fence``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import PartitionTaken
from pipeline.settings import KafkaSettings
from sinks.pii import PiiHasher
from sinks.runner import SinkRunner
from sinks.store import app_id
from sinks.tables import build_tables, default_specs, source_topic
from tests.sinks.land import Webhouse, settings_for
from tools.records import event


def _events(first: int, last: int) -> list[dict[str, object]]:
    return [event(f"m-{i}", name="Product Viewed") for i in range(first, last + 1)]


def _count(wh: Webhouse) -> int:
    row = wh.connect().execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("first", ["new owner", "stalled sink"])
def test_whichever_commits_second_lands_nothing(tmp_path: Path, first: str) -> None:
    wh = Webhouse(tmp_path, dedupe_ids=False)
    table = wh.tables["events"]
    app = app_id("events", "t", 0)
    rows = table.to_arrow([r for e in _events(0, 10) for r in table.rows(e)])
    wh.store.append(table, rows, {app: 10}, landed={app: -1})  # the first to commit, from -1
    with pytest.raises(PartitionTaken) as taken:  # the other one read the same -1
        wh.store.append(table, rows, {app: 10}, landed={app: -1})
    assert taken.value.recorded == {app: 10}, first
    assert _count(wh) == 11


def test_the_runner_drops_the_partition_it_lost_and_lands_the_rest(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, dedupe_ids=False)
    settings = settings.model_copy(update={"kafka": KafkaSettings(bootstrap_servers="127.0.0.1:1")})  # unused
    runner = SinkRunner(settings, build_tables(PiiHasher("test-secret"), default_specs("raw")))
    events = next(t for ts in runner.by_topic.values() for t in ts if t.name == "events")
    topic = source_topic(events.spec, runner.topics)
    for partition, (lo, hi) in enumerate([(0, 4), (5, 9)]):
        key = ("events", (topic, partition))
        for offset, record in enumerate(_events(lo, hi)):
            runner.records[key].append(record)
            runner.derived[key].append(events.derive(record))
            runner.offsets[key] = offset
            runner.buffered += 1
        runner.landed[("events", topic, partition)] = -1
    other = Webhouse(tmp_path, dedupe_ids=False)  # the sink that took partition 0 meanwhile
    other_rows = events.to_arrow([r for e in _events(0, 4) for r in events.rows(e)])
    other.store.append(events, other_rows, {app_id("events", topic, 0): 4})
    try:  # the landing step of a flush (a whole flush would also commit offsets to Kafka)
        runner._land(events, [("events", (topic, 0)), ("events", (topic, 1))])
    finally:
        runner.consumer.close()
    assert _count(other) == 10  # partition 0 once (the other sink's), partition 1 from this one
    assert runner.landed[("events", topic, 0)] == 4
    assert runner.landed[("events", topic, 1)] == 4
    assert runner.metrics.fenced.labels("events")._value.get() == 1
