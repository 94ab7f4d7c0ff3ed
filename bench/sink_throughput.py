"""How fast the webhouse lands rows, and what the natural-id dedupe costs.

Runs without Kafka: flattening (record -> row), then DeltaStore.append of batches
into one date partition (the dedupe's worst case: every batch reads the ids of a
growing partition), with the dedupe on and off.

    .venv/bin/python bench/sink_throughput.py [events] [batch]

Also lands the same batches through Delta MERGE (insert when not matched), the alternative dedupe.
compare.py reuses ``records``, ``flatten`` and ``land``.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pipeline.settings import WebhouseSettings
from sinks.pii import PiiHasher
from sinks.store import DeltaStore
from sinks.tables import Table, TableSpec, default_specs
from tools.records import T0, event


def records(total: int) -> list[dict[str, Any]]:
    return [
        event(f"m{i}", type="page", name="P", path=f"/p{i % 50}", anonymous_id=f"a{i % 5000}",
              session_id=f"s{i % 9000}", customer_id=None, ip="198.51.100.7", at=T0)
        for i in range(total)
    ]  # fmt: skip


def events_spec() -> TableSpec:
    return next(s for s in default_specs() if s.name == "events")


def flatten(recs: list[dict[str, Any]], batch: int) -> list[pa.Table]:
    """Records -> Arrow batches, column-wise: the sink's own path."""
    table = Table(events_spec(), PiiHasher("bench"))
    return [
        table.batch(recs[i : i + batch], [table.derive(r) for r in recs[i : i + batch]])
        for i in range(0, len(recs), batch)
    ]


@dataclass(frozen=True, slots=True)
class Landed:
    rows: int
    write_s: float  # DeltaStore.append in total, dedupe included
    dedupe_s: float
    last_dedupe_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.write_s


def land(batches: list[pa.Table], dedupe: bool) -> Landed:
    """Append the batches to a fresh Delta table, natural-id dedupe on or off."""
    spec = events_spec() if dedupe else dataclasses.replace(events_spec(), id_columns=())
    write_s = dedupe_s = last = 0.0
    with tempfile.TemporaryDirectory() as root:
        store = DeltaStore(WebhouseSettings(root=str(Path(root))))
        t = Table(spec, PiiHasher("bench"))
        for n, data in enumerate(batches):
            result = store.append(t, data, {"bench": n})
            write_s += result.seconds
            dedupe_s += result.dedupe_seconds
            last = result.dedupe_seconds
    return Landed(sum(b.num_rows for b in batches), write_s, dedupe_s, last)


def main(total: int = 200_000, batch: int = 20_000) -> None:
    recs = records(total)
    table = Table(events_spec(), PiiHasher("bench"))
    started = time.perf_counter()
    for r in recs[:20_000]:
        table.rows(r)
    flat_s = time.perf_counter() - started
    columns = len(table.arrow_schema)
    print(f"flatten row by row (reference): {20_000 / flat_s:,.0f} records/s ({columns} columns)")
    started = time.perf_counter()
    batches = flatten(recs, batch)
    flat_s = time.perf_counter() - started
    print(f"flatten column-wise (the sink's path): {total / flat_s:,.0f} records/s")
    for dedupe in (True, False):
        landed = land(batches, dedupe)
        if dedupe:
            merge_instead(total, batch, batches)
        label = "dedupe on" if dedupe else "dedupe off"
        print(
            f"{label}: {landed.rows_per_s:,.0f} rows/s landed (flattening excluded), "
            f"dedupe {landed.dedupe_s:.2f}s in total, last batch's dedupe {landed.last_dedupe_s * 1000:.0f} "
            f"ms against {total - batch:,} rows in the partition"
        )


def merge_instead(total: int, batch: int, batches: list[pa.Table]) -> None:
    """The alternative: Delta MERGE (insert when not matched), restricted to the batch's dates."""
    with tempfile.TemporaryDirectory() as root:
        path = str(Path(root) / "events")
        spent = 0.0
        for n, data in enumerate(batches):
            started = time.perf_counter()
            txn = CommitProperties(app_transactions=[Transaction("bench", n)])
            if n == 0:
                write_deltalake(path, data, partition_by=["event_date", "channel"], commit_properties=txn)
            else:
                dates = ", ".join(f"'{d}'" for d in pc.unique(data["event_date"]).to_pylist())
                predicate = f"t.message_id = s.message_id AND t.event_date IN ({dates})"
                merger = DeltaTable(path).merge(
                    data, predicate, source_alias="s", target_alias="t", commit_properties=txn
                )
                merger.when_not_matched_insert_all().execute()
            spent += time.perf_counter() - started
        print(f"merge instead: {total / spent:,.0f} rows/s landed")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
