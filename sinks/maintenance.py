"""Compaction, vacuum and the right to be forgotten, safe while sinks run.

All three are ordinary Delta commits under optimistic concurrency: if a sink
committed in between, the commit fails with a conflict and is retried on a fresh
snapshot. Vacuum deletes files no snapshot within the retention needs: in-flight
files of a running sink are younger than the retention and are left alone.

``forget`` rewrites each affected date partition without the customer's rows
(a predicate overwrite naming only the partition, so the customer id never
appears in the Delta log), then vacuums the replaced files at once. Delta keeps
column statistics only for time columns (see ``TableSpec.stats_columns``), so no
identifier survives in the log either.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from pipeline.errors import SinkError
from pipeline.settings import WebhouseSettings
from sinks.funnel_cache import cache_dir
from sinks.store import DeltaStore, commit_retrying
from sinks.tables import TableSpec

T = TypeVar("T")
log = logging.getLogger(__name__)
CUSTOMER_COLUMNS = ("customer_id", "user_id", "merged_into")


def with_retries(what: str, retries: int, action: Callable[[], T]) -> T:
    """``action`` (which opens a fresh snapshot), retried while a concurrent commit wins the race."""
    try:
        return commit_retrying(what, retries, base_s=0.1, max_s=3.0)(action)
    except CommitFailedError as exc:
        raise SinkError(f"{what}: still conflicting after {retries} retries: {exc}") from exc


def compact(store: DeltaStore, specs: list[TableSpec]) -> dict[str, tuple[int, int]]:
    """Rewrite small files into large ones; returns table -> (files removed, files added)."""
    target = store.settings.compact_target_file_mb * 1024 * 1024
    out = {}
    for spec in specs:
        if store.open(spec.name) is None:
            continue

        def run(name: str = spec.name) -> dict[str, int]:
            dt = store.open(name)
            assert dt is not None
            metrics: dict[str, int] = dt.optimize.compact(target_size=target)
            return metrics

        m = with_retries(f"compact {spec.name}", store.settings.commit_retries, run)
        out[spec.name] = (int(m.get("numFilesRemoved", 0)), int(m.get("numFilesAdded", 0)))
    return out


def most_small_files(dt: DeltaTable, target_bytes: int) -> int:
    """The largest number of files under ``target_bytes`` in any one partition of the snapshot."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    small = actions.filter(pc.less(actions["size_bytes"], target_bytes))
    if small.num_rows == 0:
        return 0
    keys = [c for c in small.column_names if c.startswith("partition.")]
    if not keys:
        return small.num_rows
    counts = small.group_by(keys, use_threads=False).aggregate([("path", "count")])
    return int(pc.max(counts["path_count"]).as_py())


def auto_compact(
    store: DeltaStore, specs: list[TableSpec], min_small_files: int
) -> dict[str, tuple[int, int]]:
    """Compact the tables where some partition holds ``min_small_files`` small files or more.

    A sink commits a file per partition per batch (every ``batch_max_seconds``): left alone,
    a day partition gathers thousands of small files and every query opens them all.
    """
    target = store.settings.compact_target_file_mb * 1024 * 1024
    due = []
    for spec in specs:
        dt = store.open(spec.name)
        if dt is not None and most_small_files(dt, target) >= min_small_files:
            due.append(spec)
    return compact(store, due) if due else {}


def retention_hours(cfg: WebhouseSettings, table: str) -> int:
    return cfg.table_retention_hours.get(table, cfg.vacuum_retention_hours)


def vacuum(store: DeltaStore, specs: list[TableSpec], dry_run: bool = False) -> dict[str, int]:
    """Delete files older than the table's retention that the current snapshot no longer uses.

    Full mode: also files a crashed write left unreferenced (never younger than the retention).
    """
    out = {}
    for spec in specs:
        dt = store.open(spec.name)
        if dt is None:
            continue
        hours = retention_hours(store.settings, spec.name)
        removed = dt.vacuum(
            retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False, full=True
        )
        out[spec.name] = len(removed)
    return out


@dataclass
class Upkeep:
    """The sink's own maintenance: compaction every ``compact_every_seconds`` (tables with a
    partition of ``compact_min_small_files`` small files), vacuum every ``vacuum_every_seconds``.

    The sink calls ``run_due`` from its loop, between its commits, so its own appends never race
    it; another writer's commit is an ordinary Delta conflict, retried (``with_retries``). Neither
    touches the application transactions (the landed offsets) of the log. The first of each runs
    one interval after start, so a restart does not scan every table at once.
    """

    store: DeltaStore
    specs: list[TableSpec]
    clock: Callable[[], float] = time.monotonic
    next_compact: float = field(init=False)
    next_vacuum: float = field(init=False)

    def __post_init__(self) -> None:
        now = self.clock()
        self.next_compact = now + self.store.settings.compact_every_seconds
        self.next_vacuum = now + self.store.settings.vacuum_every_seconds

    def compact_now(self) -> dict[str, tuple[int, int]]:
        """Compact the tables past the small-file threshold (if compaction is on at all)."""
        cfg = self.store.settings
        if not cfg.compact_every_seconds:
            return {}
        done = auto_compact(self.store, self.specs, cfg.compact_min_small_files)
        for name, (removed, added) in done.items():
            log.info("%s: %d small files compacted into %d", name, removed, added)
        return done

    def run_due(self) -> None:
        """Compact and vacuum if their time has come; a no-op (one clock read) otherwise."""
        cfg, now = self.store.settings, self.clock()
        if cfg.compact_every_seconds and now >= self.next_compact:
            self.compact_now()
            self.next_compact = self.clock() + cfg.compact_every_seconds
        if cfg.vacuum_every_seconds and now >= self.next_vacuum:
            for name, files in vacuum(self.store, self.specs).items():
                if files:
                    log.info("%s: vacuumed %d files past the retention", name, files)
            self.next_vacuum = self.clock() + cfg.vacuum_every_seconds


@dataclass(frozen=True, slots=True)
class Forgotten:
    table: str
    rows: int
    partitions: int
    files_vacuumed: int


def _matches(schema: pa.Schema, customer_id: str, anonymous_ids: list[str]) -> pads.Expression | None:
    expr: pads.Expression | None = None
    for column in CUSTOMER_COLUMNS:
        if column in schema.names:
            e = pads.field(column) == customer_id
            expr = e if expr is None else expr | e
    if anonymous_ids and "anonymous_id" in schema.names:
        e = pads.field("anonymous_id").isin(anonymous_ids)
        expr = e if expr is None else expr | e
    return expr


def _sql_literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def forget_table(
    store: DeltaStore,
    spec: TableSpec,
    customer_id: str,
    anonymous_ids: list[str],
    extra: Callable[[pa.Table], pa.Array] | None = None,
) -> Forgotten:
    """Remove every row of the customer (or its devices) from one table, then vacuum the old files."""

    def mask_of(data: pa.Table) -> pa.Array:
        mask: pa.Array = pa.array([False] * data.num_rows, pa.bool_())
        expr = _matches(data.schema, customer_id, anonymous_ids)
        if expr is not None:
            evaluated = pads.dataset(data).to_table(columns={"m": expr})["m"].combine_chunks()
            mask = pc.fill_null(evaluated, False)
        if extra is not None:
            mask = pc.or_(mask, extra(data))
        return mask

    def rewrite(date: object, everything: bool) -> int:
        """Rewrite one date partition (or the whole table) without the customer's rows."""
        dt = store.open(spec.name)
        assert dt is not None
        dataset = dt.to_pyarrow_dataset()
        if everything:
            data, predicate = dataset.to_table(), None
        else:
            date_col = spec.partition_by[0]
            in_part = pads.field(date_col) == date if date is not None else pads.field(date_col).is_null()
            data = dataset.to_table(filter=in_part)
            predicate = f"{date_col} = {_sql_literal(date)}" if date is not None else f"{date_col} IS NULL"
        mask = mask_of(data)
        hits = pc.sum(mask).as_py() or 0
        if hits:
            write_deltalake(
                dt,
                data.filter(pc.invert(mask)),
                mode="overwrite",
                predicate=predicate,
                partition_by=list(spec.partition_by) or None,
            )
        return int(hits)

    def affected() -> list[object] | None:
        """Date partitions holding the customer's rows (None: scan the whole table)."""
        dt = store.open(spec.name)
        if dt is None:
            return []
        dataset = dt.to_pyarrow_dataset()
        expr = _matches(dataset.schema, customer_id, anonymous_ids)
        if not spec.partition_by or extra is not None:
            return None
        if expr is None:
            return []
        dates = dataset.to_table(columns=[spec.partition_by[0]], filter=expr)[spec.partition_by[0]]
        return sorted(set(dates.to_pylist()), key=lambda d: (d is None, str(d)))

    retries = store.settings.commit_retries
    dates = affected()
    if dates is None:
        rows = with_retries(f"forget {spec.name}", retries, lambda: rewrite(None, True))
        partitions = 1 if rows else 0
    else:
        counts = [with_retries(f"forget {spec.name}", retries, partial(rewrite, d, False)) for d in dates]
        rows, partitions = sum(counts), sum(1 for c in counts if c)
    vacuumed = 0
    if rows:
        dt = store.open(spec.name)
        assert dt is not None
        # Lite mode: only files the log marks removed, i.e. those just replaced; in-flight files stay.
        vacuumed = len(dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False))
    return Forgotten(spec.name, rows, partitions, vacuumed)


def forget(store: DeltaStore, specs: list[TableSpec], customer_id: str) -> list[Forgotten]:
    """Forget a customer everywhere: its rows, its devices' rows, and dead letters that mention them."""
    identity = store.open("identity_map")
    anonymous_ids: list[str] = []
    if identity is not None:
        links = identity.to_pyarrow_dataset().to_table(
            columns=["anonymous_id"], filter=pads.field("customer_id") == customer_id
        )
        anonymous_ids = sorted(set(links["anonymous_id"].to_pylist()))
    tokens = [customer_id.encode(), *(a.encode() for a in anonymous_ids)]

    def mentions(data: pa.Table) -> pa.Array:
        payloads: list[bytes | None] = (
            data["payload"].to_pylist() if "payload" in data.schema.names else [None] * data.num_rows
        )
        return pa.array([p is not None and any(t in p for t in tokens) for p in payloads], pa.bool_())

    results = []
    order = sorted(specs, key=lambda s: s.name == "identity_map")  # the map last: it finds the devices
    for spec in order:
        extra = mentions if spec.name == "dead_letters" else None
        results.append(forget_table(store, spec, customer_id, anonymous_ids, extra))
    caches = cache_dir(store.root)
    if caches is not None and caches.exists():
        # Derived from the tables (hashed devices and links, per-day counts): rebuilt on next read.
        shutil.rmtree(caches)
    return results
