"""Tables that keep one current row per natural id (``TableSpec.upsert``), landed by Delta MERGE.

Most tables are append-once: a repeat of an id is a redelivery and is dropped. A few topics carry
new versions of the same thing instead (the identity topic re-sends a link each time its last seen
moves). Dropping those keeps a stale row; appending them all keeps a row per version. An upsert
table folds them: the row with the earliest ``earliest`` value (ties broken by ``tiebreak``) gives
every column but ``latest``, and each ``latest`` column keeps its largest value. Both rules are
min/max over a total order, so the row is the same whatever the order, the batching or the
redeliveries, which is what exactly-once asks of a table (a replayed version changes nothing).
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError

from pipeline.errors import SinkError
from sinks.tables import Upsert

_KEY = "__key"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def fold(data: pa.Table, keys: tuple[str, ...], rule: Upsert, key: pa.Array) -> pa.Table:
    """One row per id within a batch, by the rule (``key``: the id of each row, one array)."""
    if data.num_rows < 2 or pc.count_distinct(key, mode="all").as_py() == data.num_rows:
        return data
    keyed = data.append_column(_KEY, key)
    ordered = keyed.take(pc.sort_indices(keyed, [(c, "ascending") for c in (_KEY, *rule.ranking)]))
    ids = ordered[_KEY].combine_chunks()
    starts = pc.not_equal(ids[1:], ids[:-1])
    first = pa.concat_arrays([pa.array([True]), starts.fill_null(True)])
    firsts = ordered.filter(first)
    if rule.latest:
        largest = ordered.group_by(_KEY, use_threads=False).aggregate([(c, "max") for c in rule.latest])
        by_id = dict(zip(largest[_KEY].to_pylist(), range(largest.num_rows), strict=True))
        rows = pa.array([by_id[k] for k in firsts[_KEY].to_pylist()], pa.int64())
        for column in rule.latest:
            at = firsts.schema.get_field_index(column)
            values = pc.take(largest[f"{column}_max"], rows).cast(firsts.schema.field(column).type)
            firsts = firsts.set_column(at, firsts.schema.field(column), values)
    return firsts.drop_columns([_KEY]).select(data.column_names)


def _checked(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise SinkError(f"upsert column {name!r} is not a plain identifier (it goes into a MERGE predicate)")
    return name


def _precedes(ranking: tuple[str, ...]) -> str:
    """SQL: the source row ranks before the target row (lexicographic over ``ranking``)."""
    head = _checked(ranking[0])
    if len(ranking) == 1:
        return f"s.{head} < t.{head}"
    return f"(s.{head} < t.{head} OR (s.{head} = t.{head} AND {_precedes(ranking[1:])}))"


def merge(
    dt: DeltaTable, data: pa.Table, keys: tuple[str, ...], rule: Upsert, txns: list[Transaction]
) -> bool:
    """MERGE ``data`` (folded already) into the table with the offsets; False when it changed no
    row, in which case Delta writes no commit and the caller must record the offsets itself."""
    match = " AND ".join(f"t.{_checked(k)} = s.{k}" for k in keys)
    earlier = _precedes(rule.ranking)
    updates = {
        c: f"CASE WHEN {earlier} THEN s.{c} ELSE t.{c} END"
        for c in map(_checked, data.column_names)
        if c not in keys and c not in rule.latest
    }
    later = [f"s.{_checked(c)} > t.{c}" for c in rule.latest]
    updates.update({c: f"CASE WHEN s.{c} > t.{c} THEN s.{c} ELSE t.{c} END" for c in rule.latest})
    before = dt.version()
    try:
        (
            dt.merge(
                data,
                match,
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                commit_properties=CommitProperties(app_transactions=txns),
            )
            .when_matched_update(updates, predicate=" OR ".join([earlier, *later]))
            .when_not_matched_insert_all()
            .execute()
        )
    except CommitFailedError:
        raise  # a lost race: the caller retries on a fresh snapshot
    except Exception as exc:
        raise SinkError(f"{dt.table_uri}: cannot merge {data.num_rows} rows: {exc}") from exc
    return dt.version() != before
