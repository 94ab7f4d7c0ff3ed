"""Delta Lake tables under one root: idempotent appends that carry their Kafka offsets.

Exactly-once rests on two facts of the Delta log. A commit is atomic (one new
``_delta_log/NNN.json`` or nothing), and it can carry application transactions
(``txn`` actions): we store, per (table, topic, partition), the last Kafka offset
whose rows the commit contains. So data and position land together; a crash
before the commit leaves only unreferenced Parquet files (vacuum's business), a
crash after it is resumed from ``transaction_version + 1``. The table, not
Kafka's committed offset, is the source of truth.

Upstream duplicates (the same natural id at another offset) are dropped twice:
within the batch (first wins) and against the table, reading only the id columns
of the date partitions the batch touches. ``webhouse.dedupe_ids = false`` turns both
off, so that a test (``webhouse chaos --no-dedupe``) sees whether offsets alone land
each record once.

An upsert table (``TableSpec.upsert``, the identity map) is landed by MERGE instead: a repeat of
an id updates its row by an order-free rule (``sinks/upsert.py``), whatever ``dedupe_ids`` says,
because a repeat there is a new version and not a copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.errors import PartitionTaken, SinkError
from pipeline.settings import WebhouseSettings
from sinks.tables import Table, TableSpec
from sinks.upsert import fold, merge

log = logging.getLogger(__name__)
_ROW = "__row"
_T = TypeVar("_T")


def commit_retrying(what: str, retries: int, base_s: float, max_s: float) -> Retrying:
    """Retries of a Delta commit that lost an optimistic-concurrency race (``CommitFailedError``):
    waits ``base_s``, doubling up to ``max_s``; the last conflict is re-raised. Each try must read
    a fresh snapshot, or it loses the same race again."""

    def note(state: RetryCallState) -> None:
        assert state.outcome is not None
        log.info("%s: commit lost a race (%s), retrying", what, state.outcome.exception())

    return Retrying(
        retry=retry_if_exception_type(CommitFailedError),
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=base_s, max=max_s),
        before_sleep=note,
        reraise=True,
    )


def app_id(table: str, topic: str, partition: int) -> str:
    return f"webhouse-sink:{table}:{topic}:{partition}"


@dataclass(frozen=True, slots=True)
class WriteResult:
    table: str
    rows: int
    duplicates: int
    files: int
    seconds: float
    dedupe_seconds: float
    version: int


def _key(data: pa.Table, keys: tuple[str, ...]) -> pa.Array:
    """One comparable array per natural id (several columns joined by a unit separator)."""
    parts = [pc.cast(data[k], pa.string()).combine_chunks() for k in keys]
    if len(parts) == 1:
        return parts[0]
    filled = [pc.fill_null(p, "\x00") for p in parts]
    return pc.binary_join_element_wise(*filled, "\x1f")


def dedupe_batch(data: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Keep the first row of each natural id within one batch."""
    if not keys or data.num_rows < 2:
        return data
    key = _key(data, keys)
    if pc.count_distinct(key, mode="all").as_py() == data.num_rows:
        return data  # the common case: no repeat, so no copy of every column
    ids = pa.table({"k": key, _ROW: pa.array(range(data.num_rows), pa.int64())})
    first = ids.group_by("k", use_threads=False).aggregate([(_ROW, "min")])[f"{_ROW}_min"]
    return data.take(pc.take(first, pc.sort_indices(first)))


def anti_join(data: pa.Table, existing: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Rows of ``data`` whose id is not in ``existing`` (order kept).

    ``is_in`` builds a hash table of its ``value_set``. ``existing`` holds the ids of every day the
    batch touches, millions by the end of a busy day, and hashing them cost 2.8 s per batch at 4
    million (issue 11). So the batch's ids are the ones hashed, and each id of ``existing`` is
    looked up in them (93 ms at 4 million): the ids of ``existing`` that the batch also holds are
    few, and the batch's rows with those ids are the ones dropped."""
    if existing.num_rows == 0 or data.num_rows == 0:
        return data
    batch_ids = _key(data, keys)
    existing_ids = _key(existing, keys)
    repeated = existing_ids.filter(pc.is_in(existing_ids, value_set=batch_ids))
    if len(repeated) == 0:
        return data  # the common case: nothing seen before, so no copy of every column
    return data.filter(pc.invert(pc.is_in(batch_ids, value_set=repeated)))


def fence(table: str, dt: DeltaTable | None, landed: dict[str, int] | None) -> None:
    """Raise ``PartitionTaken`` when the table records, for any app id, more than the caller has
    landed (``landed``: app id -> its last offset in the table as the caller knows it, -1 for
    none). Two sinks that both hold a partition for a moment (one stalled past its session) read
    the same position; whichever commits second finds it moved and lands nothing there. A commit
    racing the other's at the same version loses with a concurrent-transaction conflict (the same
    app id) and is retried, so it comes back here."""
    if dt is None or not landed:
        return
    recorded = {app: dt.transaction_version(app) for app in landed}
    moved = {app: v for app, v in recorded.items() if v is not None and v > landed[app]}
    if moved:
        raise PartitionTaken(table, moved)


def advancing(dt: DeltaTable | None, offsets: dict[str, int]) -> list[Transaction]:
    """The offsets to record: those past what the table already records for their partition. A sink
    that lost its partition but still commits (stalled past its session timeout) must not move the
    new owner's offset back; its rows up to there are in the table already, the dedupe drops them."""
    txns = []
    for app, offset in sorted(offsets.items()):
        recorded = None if dt is None else dt.transaction_version(app)
        if recorded is None or recorded < offset:
            txns.append(Transaction(app, offset))
    return txns


class DeltaStore:
    """The webhouse root: one Delta table per declared table."""

    def __init__(self, settings: WebhouseSettings) -> None:
        self.settings = settings
        self.root = settings.root.rstrip("/")
        self.options = dict(settings.storage_options) or None

    def path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def open(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.path(table), storage_options=self.options)
        except TableNotFoundError:
            return None

    def transaction_version(self, table: str, app: str) -> int | None:
        dt = self.open(table)
        return None if dt is None else dt.transaction_version(app)

    def existing_ids(self, dt: DeltaTable, spec: TableSpec, batch: pa.Table) -> pa.Table:
        """Natural ids already in the table, read from the partitions the batch touches only."""
        dataset = dt.to_pyarrow_dataset()
        flt = None
        if spec.partition_by:
            date_col = spec.partition_by[0]
            dates = pc.unique(batch[date_col]).drop_null()
            flt = pads.field(date_col).isin(dates)
            if batch[date_col].null_count:
                flt = flt | pads.field(date_col).is_null()
        return dataset.to_table(columns=list(spec.id_columns), filter=flt)

    def append(
        self, table: Table, data: pa.Table, offsets: dict[str, int], landed: dict[str, int] | None = None
    ) -> WriteResult:
        """Append ``data`` (deduplicated) and record ``offsets`` (app id -> last offset) atomically.
        ``landed`` (app id -> what the caller believes the table holds): ``fence``."""
        spec = table.spec
        if spec.upsert is not None:
            return self._upsert(spec, data, offsets, landed)
        started = time.perf_counter()
        received = data.num_rows
        keys = spec.id_columns if self.settings.dedupe_ids else ()
        data = dedupe_batch(data, keys)

        def land(dt: DeltaTable | None, txns: list[Transaction]) -> tuple[int, float]:
            dedupe_started = time.perf_counter()
            fresh = data
            if dt is not None and keys and data.num_rows:
                fresh = anti_join(data, self.existing_ids(dt, spec, data), keys)
            dedupe_s = time.perf_counter() - dedupe_started
            self._write(spec, dt, fresh, txns)
            return fresh.num_rows, dedupe_s

        rows, dedupe_s = self._committing(spec, offsets, landed, land)
        return self._result(spec, rows, received - rows, started, dedupe_s)

    def _upsert(
        self, spec: TableSpec, data: pa.Table, offsets: dict[str, int], landed: dict[str, int] | None
    ) -> WriteResult:
        """Fold the batch to one row per id, MERGE it in with the offsets (one commit); a merge that
        changes no row writes no commit, so then an empty append records the offsets."""
        rule = spec.upsert
        assert rule is not None
        started = time.perf_counter()
        folded = fold(data, spec.id_columns, rule, _key(data, spec.id_columns)) if data.num_rows else data

        def land(dt: DeltaTable | None, txns: list[Transaction]) -> None:
            merged = dt is not None and folded.num_rows > 0 and merge(dt, folded, spec.id_columns, rule, txns)
            if not merged and (txns or dt is None):
                self._write(spec, dt, folded if dt is None else folded.slice(0, 0), txns)

        self._committing(spec, offsets, landed, land)
        return self._result(spec, folded.num_rows, data.num_rows - folded.num_rows, started, 0.0)

    def _committing(
        self,
        spec: TableSpec,
        offsets: dict[str, int],
        landed: dict[str, int] | None,
        land: Callable[[DeltaTable | None, list[Transaction]], _T],
    ) -> _T:
        """Run ``land`` on a fresh snapshot (fenced, with the offsets still to record) until its
        commit wins a race, ``commit_retries`` times at most."""
        retries = self.settings.commit_retries
        try:
            for attempt in commit_retrying(spec.name, retries, base_s=0.05, max_s=2.0):
                with attempt:
                    dt = self.open(spec.name)
                    fence(spec.name, dt, landed)
                    result = land(dt, advancing(dt, offsets))
        except CommitFailedError as exc:
            raise SinkError(f"{spec.name}: commit failed {retries + 1} times: {exc}") from exc
        return result

    def _result(
        self, spec: TableSpec, rows: int, duplicates: int, started: float, dedupe_s: float
    ) -> WriteResult:
        latest = self.open(spec.name)
        assert latest is not None
        metrics = latest.history(1)[0].get("operationMetrics", {})
        files = metrics.get("num_added_files", metrics.get("num_target_files_added", 0))  # append, merge
        return WriteResult(spec.name, rows, duplicates, int(files), time.perf_counter() - started, dedupe_s,
                           latest.version())  # fmt: skip

    def _write(
        self, spec: TableSpec, dt: DeltaTable | None, fresh: pa.Table, txns: list[Transaction]
    ) -> None:
        """One commit of ``fresh`` with the offsets; a lost race surfaces as ``CommitFailedError``."""
        config = None
        if dt is None:
            config = {"delta.dataSkippingStatsColumns": ",".join(spec.stats_columns) or "_none_"}
        try:
            write_deltalake(
                dt if dt is not None else self.path(spec.name),
                fresh,
                mode="append",
                partition_by=list(spec.partition_by) or None,
                schema_mode="merge",
                configuration=config,
                storage_options=self.options if dt is None else None,
                commit_properties=CommitProperties(app_transactions=txns),
            )
        except CommitFailedError:
            raise
        except Exception as exc:
            raise SinkError(f"{spec.name}: cannot write {fresh.num_rows} rows: {exc}") from exc
