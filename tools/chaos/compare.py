"""What two runs landed, table by table: snapshots, differences, lost and duplicated events.

A snapshot is a table read whole from its Delta files (the tables are small in a chaos run),
each row made comparable: wall-clock columns dropped (when the collector received an event,
when a stage failed on it: they differ between any two runs), values turned into stable JSON.
The two runs send the same events with the same ids and event times (no ``sentAt``, so event
time is the client's timestamp and not a received-minus-delay that jitters by milliseconds),
so every other column must agree row for row.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipeline.errors import WebhouseError
from pipeline.runtime.control import is_control
from pipeline.serde import make_serde
from sinks.tables import default_specs

# Columns that record the wall clock of one run, not what happened.
WALL_CLOCK: dict[str, tuple[str, ...]] = {
    "events": ("received_at",),
    "dead_letters": ("failed_at", "failed_date"),
}
SAMPLES = 3


class ChaosError(WebhouseError):
    """A chaos run could not read what it compares."""


def compared_tables() -> dict[str, tuple[str, ...]]:
    """Every webhouse table and its natural id (from the sink's declarations)."""
    return {spec.name: spec.id_columns for spec in default_specs()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):  # an Arrow map
            return {str(k): _plain(v) for k, v in sorted(value, key=lambda kv: str(kv[0]))}
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Snapshot:
    table: str
    rows: Counter[str]  # canonical JSON of each row -> copies
    duplicated: int  # rows beyond one per natural id

    @property
    def count(self) -> int:
        return sum(self.rows.values())


def snapshot(root: Path, table: str, id_columns: tuple[str, ...]) -> Snapshot:
    try:
        data = DeltaTable(str(root / table)).to_pyarrow_table()
    except TableNotFoundError:
        return Snapshot(table, Counter(), 0)
    dropped = [c for c in WALL_CLOCK.get(table, ()) if c in data.column_names]
    records = data.drop_columns(dropped).to_pylist()
    ids = Counter(tuple(_plain(r.get(c)) for c in id_columns) for r in records) if id_columns else Counter()
    rows = Counter(json.dumps(_plain(r), sort_keys=True, default=str) for r in records)
    return Snapshot(table, rows, sum(ids.values()) - len(ids))


def snapshots(root: Path) -> dict[str, Snapshot]:
    return {name: snapshot(root, name, ids) for name, ids in compared_tables().items()}


@dataclass(frozen=True, slots=True)
class TableDiff:
    table: str
    baseline_rows: int
    chaos_rows: int
    only_baseline: int  # row copies the undisturbed run has and the chaos run has not
    only_chaos: int
    samples_baseline: list[dict[str, Any]]
    samples_chaos: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline_rows": self.baseline_rows,
            "chaos_rows": self.chaos_rows,
            "only_baseline": self.only_baseline,
            "only_chaos": self.only_chaos,
            "samples_baseline": self.samples_baseline,
            "samples_chaos": self.samples_chaos,
        }


def diff(baseline: Snapshot, chaos: Snapshot) -> TableDiff | None:
    """None when both runs hold the same rows, copies counted."""
    missing = baseline.rows - chaos.rows
    extra = chaos.rows - baseline.rows
    if not missing and not extra:
        return None
    return TableDiff(
        baseline.table,
        baseline.count,
        chaos.count,
        sum(missing.values()),
        sum(extra.values()),
        [json.loads(r) for r in sorted(missing)[:SAMPLES]],
        [json.loads(r) for r in sorted(extra)[:SAMPLES]],
    )


def landed_ids(root: Path) -> Counter[str]:
    """Message id -> rows in ``events``."""
    try:
        data = DeltaTable(str(root / "events")).to_pyarrow_table(columns=["message_id"])
    except TableNotFoundError:
        return Counter()
    return Counter(data.column("message_id").to_pylist())


def raw_copies(bootstrap: str, topic: str, schema_registry_url: str | None = None) -> int:
    """Records on the raw topic beyond one per message id: the copies a client's retries after a
    collector kill put there (at least once by design; the stages downstream must absorb them)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"webhouse-chaos-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    serde = make_serde("customer_event", schema_registry_url)
    ids: Counter[str] = Counter()
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        done = {p for p, end in ends.items() if end <= 0}
        while len(done) < len(partitions):
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is not None:
                    raise ChaosError(f"reading {topic}: {msg.error()}")
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                if offset + 1 >= ends[partition]:
                    done.add(partition)
                if not is_control(msg.headers()):
                    ids[serde.decode(msg.value() or b"", topic)["message_id"]] += 1
    finally:
        consumer.close()
    return sum(ids.values()) - len(ids)
