"""Table snapshots: wall-clock columns do not count, copies do, differences come with samples."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Producer
from deltalake import write_deltalake

from pipeline.runtime.control import send_end_of_input
from pipeline.serde import make_serde
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tools.chaos.compare import diff, raw_copies, snapshot
from tools.records import event


def _events(root: Path, rows: list[tuple[str, str, datetime]]) -> None:
    data = pa.table(
        {
            "message_id": [r[0] for r in rows],
            "event": [r[1] for r in rows],
            "received_at": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )
    write_deltalake(str(root / "events"), data, mode="append")


def test_runs_that_differ_only_in_wall_clock_are_equal(tmp_path: Path) -> None:
    _events(tmp_path / "a", [("m1", "Viewed", datetime(2026, 1, 1, tzinfo=UTC))])
    _events(tmp_path / "b", [("m1", "Viewed", datetime(2026, 6, 1, tzinfo=UTC))])
    a = snapshot(tmp_path / "a", "events", ("message_id",))
    b = snapshot(tmp_path / "b", "events", ("message_id",))
    assert diff(a, b) is None


def test_a_lost_row_a_changed_row_and_a_copy_are_differences(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    _events(tmp_path / "a", [("m1", "Viewed", now), ("m2", "Added", now), ("m3", "Paid", now)])
    _events(tmp_path / "b", [("m1", "Viewed", now), ("m1", "Viewed", now), ("m2", "Removed", now)])
    a = snapshot(tmp_path / "a", "events", ("message_id",))
    b = snapshot(tmp_path / "b", "events", ("message_id",))
    assert (a.duplicated, b.duplicated) == (0, 1)
    found = diff(a, b)
    assert found is not None
    assert (found.baseline_rows, found.chaos_rows, found.only_baseline, found.only_chaos) == (3, 3, 2, 2)
    assert {r["message_id"] for r in found.samples_baseline} == {"m2", "m3"}
    assert [(r["message_id"], r["event"]) for r in found.samples_chaos] == [
        ("m2", "Removed"),
        ("m1", "Viewed"),
    ]


def test_a_missing_table_is_an_empty_one(tmp_path: Path) -> None:
    empty = snapshot(tmp_path, "alerts", ("alert_id",))
    assert empty.count == 0 and empty.duplicated == 0


@pytest.mark.kafka
def test_raw_copies_counts_records_beyond_one_per_message_id(kafka_settings: KafkaSettings) -> None:
    topics = Topics.from_settings(kafka_settings)
    serde = make_serde("customer_event")
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap_servers})
    for message_id in ("m1", "m2", "m2", "m3", "m3", "m3"):
        record = event(message_id, name="Product Viewed")
        producer.produce(topics.raw_events, serde.encode(record, topics.raw_events), key=message_id.encode())
    assert producer.flush(30) == 0
    send_end_of_input(kafka_settings.bootstrap_servers, topics.raw_events)  # control records: not counted
    assert raw_copies(kafka_settings.bootstrap_servers, topics.raw_events) == 3
