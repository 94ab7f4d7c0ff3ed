"""The webhouse tables, each declared from (topic, schema, natural id, partitions, transform).

A table lands one topic. Several tables may land the same topic (events, orders
and e-mail interactions all come from the enriched events). A declaration names:

- ``source``: the ``Topics`` property it reads,
- ``schema_name``: the Avro schema its records decode with,
- ``id_columns``: the natural id; a row whose id is already in the table is dropped,
- ``partition_by``: date first (the dedupe reads only the dates a batch touches),
- ``derive``: an optional transform adding analyst columns or replacing the row,
- ``keep_flat``: whether the flattened Avro record is kept as well,
- ``upsert``: for a topic that re-sends new versions of one id, how a repeat updates the id's
  row instead of being dropped (``sinks/upsert.py``).

Alerts and profiles are declared only when their schema exists in ``schemas/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.serde import SchemaCatalog, default_catalog
from pipeline.topics import Topics
from sinks import rows
from sinks.flatten import Flattener
from sinks.pii import PiiHasher

Derive = Callable[[dict[str, Any], PiiHasher], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Upsert:
    """One current row per natural id: the row with the smallest ``earliest`` (ties: the smallest
    ``tiebreak`` columns, in turn) gives every column but ``latest``; each ``latest`` column keeps
    its largest value. Order-free, so replays and batching change nothing."""

    earliest: str
    latest: tuple[str, ...] = ()
    tiebreak: tuple[str, ...] = ()

    @property
    def ranking(self) -> tuple[str, ...]:
        return (self.earliest, *self.tiebreak)


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    source: str  # a Topics property name: "enriched_events", "sessions", ...
    schema_name: str
    id_columns: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    derive: Derive | None = None
    derived_fields: tuple[pa.Field, ...] = ()
    keep_flat: bool = True
    stats_columns: tuple[str, ...] = ()  # Delta column stats kept (never identifiers: see forget)
    doc: str = ""
    upsert: Upsert | None = None
    schema: dict[str, Any] | None = field(default=None, compare=False)  # override (tests, evolution)


class Table:
    """A declaration compiled against its Avro schema: knows its Arrow schema and its rows."""

    def __init__(self, spec: TableSpec, hasher: PiiHasher, catalog: SchemaCatalog | None = None) -> None:
        self.spec = spec
        avro = spec.schema or (catalog or default_catalog()).get(spec.schema_name).raw
        self.flattener = Flattener(avro, hasher)
        self.hasher = hasher
        fields: dict[str, pa.Field] = {}
        if spec.keep_flat:
            fields.update((f.name, f) for f in self.flattener.fields())
        fields.update((f.name, f) for f in spec.derived_fields)
        self.arrow_schema = pa.schema(list(fields.values()))

    @property
    def name(self) -> str:
        return self.spec.name

    def rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """One record's rows as dicts: the reference path (``batch`` is the fast one)."""
        derived = self.derive(record)
        if not self.spec.keep_flat:
            return derived
        base = self.flattener.row(record)
        return [{**base, **extra} for extra in derived]

    def to_arrow(self, batch: list[dict[str, Any]]) -> pa.Table:
        """Rows (from ``rows``) as a table of this table's schema."""
        return pa.Table.from_pylist(batch, schema=self.arrow_schema)

    def derive(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The transform's rows of one record (per record, so a failure is one record's dead letter)."""
        return self.spec.derive(record, self.hasher) if self.spec.derive else [{}]

    def batch(self, records: list[dict[str, Any]], derived: list[list[dict[str, Any]]]) -> pa.Table:
        """Same table as ``to_arrow([row for r in records for row in rows(r)])``, built column-wise."""
        extra = [row for rows in derived for row in rows]
        extra_schema = pa.schema(list(self.spec.derived_fields))
        if not self.spec.keep_flat:
            return pa.Table.from_pylist(extra, schema=extra_schema)
        flat = self.flattener.table(records)
        if any(len(rows) != 1 for rows in derived):
            flat = flat.take(pa.array([i for i, rows in enumerate(derived) for _ in rows], pa.int64()))
        extra_table = pa.Table.from_pylist(extra, schema=extra_schema)
        columns = {name: flat[name] for name in flat.column_names}
        columns.update({name: extra_table[name] for name in extra_table.column_names})
        return pa.Table.from_arrays([columns[f.name] for f in self.arrow_schema], schema=self.arrow_schema)


def _first_present(schema: dict[str, Any], *names: str) -> str | None:
    present = {f["name"] for f in schema["fields"]}
    return next((n for n in names if n in present), None)


def default_specs(events_source: str = "enriched", catalog: SchemaCatalog | None = None) -> list[TableSpec]:
    """Every webhouse table. ``events_source='raw'`` lands events without the stream worker."""
    catalog = catalog or default_catalog()
    events_topic = "enriched_events" if events_source == "enriched" else "raw_events"
    specs = [
        TableSpec(
            "events",
            events_topic,
            "customer_event",
            ("message_id",),
            ("event_date", "channel"),
            rows.event_row,
            rows.EVENT_FIELDS,
            stats_columns=("event_time",),
            doc="Every enriched event, flattened, with analyst columns.",
        ),
        TableSpec(
            "orders",
            events_topic,
            "customer_event",
            ("order_id", "kind", "line_no"),
            ("order_date",),
            rows.order_lines,
            rows.ORDER_FIELDS,
            keep_flat=False,
            stats_columns=("event_time",),
            doc="One row per order line of Order Completed / Order Refunded (refunds negative).",
        ),
        TableSpec(
            "email_interactions",
            events_topic,
            "customer_event",
            ("message_id",),
            ("event_date",),
            rows.email_interaction,
            rows.EMAIL_FIELDS,
            keep_flat=False,
            stats_columns=("event_time",),
            doc="E-mail sent, delivered, opened, clicked, bounced, unsubscribed.",
        ),
        TableSpec(
            "sessions",
            "sessions",
            "session",
            ("session_id",),
            ("session_date",),
            rows.date_of("start", column="session_date"),
            (pa.field("session_date", pa.string()),),
            stats_columns=("start",),
            doc="Closed sessions.",
        ),
        TableSpec(
            "identity_map",
            "identity",
            "identity_link",
            ("anonymous_id", "customer_id"),
            doc="Anonymous id -> customer id links: one row per link, its first seen and the event "
            "that made it, and its last seen (kept current).",
            upsert=Upsert("first_seen", ("last_seen",), ("source_event_id",)),
        ),
        TableSpec(
            "dead_letters",
            "dead_letters",
            "dead_letter",
            ("dead_letter_id",),
            ("failed_date",),
            rows.dead_letter_row,
            (pa.field("payload", pa.binary()), pa.field("failed_date", pa.string())),
            stats_columns=("failed_at",),
            doc="What any stage could not handle, payload with identifiers hashed.",
        ),
    ]
    if "alert" in catalog.current:
        raw = catalog.get("alert").raw
        ts = _first_present(raw, "time", "fired_at", "event_time", "created_at", "timestamp")
        specs.append(
            TableSpec(
                "alerts",
                "alerts",
                "alert",
                ("alert_id",),
                ("alert_date",),
                rows.date_of(ts or "fired_at", column="alert_date"),
                (pa.field("alert_date", pa.string()),),
                doc="Trigger alerts, fired and suppressed.",
            )
        )
    if "profile" in catalog.current:
        raw = catalog.get("profile").raw
        version = _first_present(raw, "version", "last_event_id", "updated_at")
        ts = _first_present(raw, "updated_at", "last_seen", "computed_at")
        specs.append(
            TableSpec(
                "profiles_history",
                "profiles",
                "profile",
                ("customer_id", version) if version else ("customer_id",),
                ("profile_date",),
                rows.date_of(ts or "updated_at", "last_seen", column="profile_date"),
                (pa.field("profile_date", pa.string()),),
                doc="Every profile version; `profiles` is the latest per customer (a view).",
            )
        )
    return specs


def build_tables(hasher: PiiHasher, specs: list[TableSpec]) -> list[Table]:
    return [Table(spec, hasher) for spec in specs]


def source_topic(spec: TableSpec, topics: Topics) -> str:
    topic: str = getattr(topics, spec.source)
    return topic
