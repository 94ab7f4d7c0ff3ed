"""A Delta snapshot as a DuckDB view: ``read_parquet`` over the snapshot's files, nothing else.

Why not deltalake's Arrow dataset: DuckDB scanning ``DeltaTable.to_pyarrow_dataset()`` crashed
the process at exit (exit 139, or a hang) after a ``LIMIT`` query (issue 12). Here DuckDB
reads the Parquet files itself, so no Python object is scanned:

- the files are exactly the snapshot's (``DeltaTable.file_uris()``: the active add actions),
  so files a commit removed or an unfinished write left behind are never read;
- partition values come from the hive-style paths Delta writes (DuckDB URL-decodes them and
  reads ``__HIVE_DEFAULT_PARTITION__`` as NULL), typed by the table schema;
- every column of the table schema is there with its declared type, also for older files
  written before a column was added (``union_by_name``, then a cast or a typed NULL). Only a
  table whose schema changed since its first version pays for ``union_by_name`` (it reads every
  file's footer each time a query binds the view: 0.7 s for 180 files); the others are read
  with the first file's schema, which every file then shares.

Local roots only: DuckDB would need its httpfs extension (a download) for s3:// files, so an
object-store root, and any table using Delta features ``read_parquet`` cannot honour
(deletion vectors, column mapping), is read through deltalake into memory instead.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

# Reader features that change what a Parquet file's rows mean; none is written by the sink.
_UNSAFE_FEATURES = {"deletionVectors", "columnMapping"}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duck_types(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> dict[str, str]:
    """Column -> DuckDB type name of an Arrow schema (bound only, nothing scanned)."""
    rel = con.from_arrow(schema.empty_table())
    return {name: str(t) for name, t in zip(rel.columns, rel.types, strict=True)}


def _where(where: str | None) -> str:
    return f" WHERE {where}" if where else ""


def empty_view_sql(name: str, types: dict[str, str]) -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(c)}" for c, t in types.items())
    return f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT {cols} WHERE false"


def readable_by_duckdb(dt: DeltaTable) -> bool:
    """True when plain ``read_parquet`` over the snapshot's files gives the table's rows."""
    if not dt.table_uri.startswith("file://") and "://" in dt.table_uri:
        return False
    features = set(dt.protocol().reader_features or ())
    return not features & _UNSAFE_FEATURES


def schema_evolved(dt: DeltaTable, schema: pa.Schema) -> bool:
    """True unless the table still has the schema of its first version (so every file has it)."""
    try:
        first = DeltaTable(dt.table_uri, version=0)
    except DeltaError:  # the first version's log is gone (cleaned up): assume it changed
        return True
    return bool(pa.schema(first.schema().to_arrow()) != schema)


def parquet_view_sql(
    con: duckdb.DuckDBPyConnection,
    name: str,
    files: list[str],
    partitions: list[str],
    types: dict[str, str],
    where: str | None = None,
    union: bool = True,
) -> str:
    """The view over ``files`` exposing exactly ``types`` (the table schema), in its order;
    ``union``: the files may lack columns added later (read each file's schema)."""
    listed = "[" + ", ".join(quote_literal(f) for f in files) + "]"
    hive = ", ".join(f"{quote_literal(p)}: {types[p]}" for p in partitions)
    source = (
        f"read_parquet({listed}, union_by_name = {str(union).lower()}, "
        f"hive_partitioning = {str(bool(partitions)).lower()}"
        + (f", hive_types = {{{hive}}}" if partitions else "")
        + ")"
    )
    found = {row[0]: row[1] for row in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    cols = []
    for col, typ in types.items():
        q = quote_ident(col)
        if col not in found:
            cols.append(f"CAST(NULL AS {typ}) AS {q}")
        elif found[col] != typ:
            cols.append(f"CAST({q} AS {typ}) AS {q}")
        else:
            cols.append(q)
    return (
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM "
        f"(SELECT {', '.join(cols)} FROM {source}){_where(where)}"
    )


def register_snapshot(
    con: duckdb.DuckDBPyConnection,
    name: str,
    dt: DeltaTable,
    where: Callable[[set[str]], str | None] | None = None,
    files: list[str] | None = None,
) -> None:
    """Make ``name`` a view of the current snapshot of ``dt``, cut by ``where(columns)`` if any;
    ``files``: only these of the snapshot's files (local roots; the funnel cache's single days)."""
    schema = pa.schema(dt.schema().to_arrow())
    cut = where(set(schema.names)) if where else None
    if files is None and not readable_by_duckdb(dt):
        # In memory: a materialised Arrow table, which DuckDB scans safely (unlike the dataset).
        hidden = f"__{name}_in_memory"
        con.register(hidden, dt.to_pyarrow_table())
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {hidden}{_where(cut)}")
        return
    types = duck_types(con, schema)
    files = dt.file_uris() if files is None else files
    if not files:
        con.execute(empty_view_sql(name, types))
        return
    partitions = list(dt.metadata().partition_columns)
    union = schema_evolved(dt, schema)
    con.execute(parquet_view_sql(con, name, files, partitions, types, cut, union))
