"""`webhouse import`: a year-old JSONL file lands every event on its own date, marked imported,
where the live endpoint's clock-skew correction would move it to its arrival time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pipeline.collector.server import ThreadedCollector
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from processors.enrichment import Enricher
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records
from tools.cli import main
from tools.import_cli import import_file

pytestmark = pytest.mark.kafka


def history(path: Path, start: datetime, days: int) -> list[datetime]:
    """One event a day from ``start``, each sent as a client that queued it would (sentAt = then)."""
    times = [start + timedelta(days=d, hours=d % 24) for d in range(days)]
    lines = [
        json.dumps(
            {
                "type": "track",
                "event": "Order Completed" if i % 2 else "Product Added",
                "userId": f"cust-{i % 3}",
                "messageId": f"h-{i}",
                "timestamp": at.isoformat(),
                "sentAt": (at + timedelta(seconds=5)).isoformat(),
                "properties": {"order_id": f"o-{i}", "revenue": 10.0, "product_id": "p-1"},
            }
        )
        for i, at in enumerate(times)
    ]
    path.write_text(
        "\n".join([*lines, "not json", "[1]", json.dumps({"type": "track", "event": "X"})]) + "\n"
    )
    return times


def test_a_year_old_file_lands_on_its_own_dates(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    path = tmp_path / "history.jsonl"
    times = history(path, start, 30)
    with ThreadedCollector(collector_settings(kafka_settings)) as collector:
        report = import_file(path, collector.url, WRITE_KEY, batch_size=7)
    assert (report.sent, report.accepted) == (31, 30)
    assert report.problems == [
        "line 31: invalid_json: Expecting value: line 1 column 1 (char 0)",
        "line 32: invalid_event: not a JSON object",
        "line 33: missing_id: neither userId nor anonymousId is set",
    ]
    records = read_records(
        kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 30
    )
    enricher = Enricher()
    landed = {}
    for record in records:
        assert record["sent_at"] is None
        assert record["properties"]["$imported"] == "true"
        assert "$sentAt" in record["properties"]
        landed[record["message_id"]] = enricher.enrich(record)["event_time"]
    assert landed == {f"h-{i}": at for i, at in enumerate(times)}


def test_the_live_endpoint_corrects_skew_and_the_cli_reports(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """Why import exists: sent live with its original sentAt, history moves to arrival time."""
    path = tmp_path / "history.jsonl"
    history(path, datetime.now(UTC).replace(microsecond=0) - timedelta(days=400), 2)
    live = [json.loads(line) for line in path.read_text().splitlines()[:2]]
    settings = collector_settings(kafka_settings)
    with ThreadedCollector(settings) as collector:
        answer = requests.post(f"{collector.url}/v1/batch", json={"batch": live}, auth=(WRITE_KEY, ""))
        assert answer.json()["accepted"] == 2
        record = read_records(
            kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 2
        )[0]
        assert Enricher().enrich(record)["event_time"] > datetime.now(UTC) - timedelta(minutes=5)
        code = main(["import", str(path), "--url", collector.url, "--write-key", WRITE_KEY])
    assert code == 1  # three bad lines
