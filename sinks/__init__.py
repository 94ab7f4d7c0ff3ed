"""The webhouse: Kafka topics landed exactly once into Delta Lake tables, queried with DuckDB.

Reading guide, in the order a record meets the modules:

- ``tables``: the table declarations (topic, Avro schema, natural id, partitions, transform);
- ``flatten``: Avro record -> flat columns, driven by the schema (new optional fields become
  new nullable columns); ``pii``: e-mail, phone and IP keyed-hashed before they land;
- ``rows``: the per-table transforms (analyst columns, order lines, e-mail interactions);
- ``runner``: `webhouse sink`, the consumer loop (poll, decode, buffer, land, commit offsets;
  for liveness, ``pipeline.ends`` tells which partitions it read to their end);
- ``store``: Delta appends that carry their Kafka offsets as application transactions, with
  the natural-id dedupe; ``upsert``: the MERGE of tables kept at one current row per id (the
  identity map); ``metrics``: what landed, commit latency, lag;
- ``maintenance``: `webhouse compact`, `vacuum`, `forget`;
- ``locate``: which root holds the tables (a clear error when none does);
- ``duck``: ``connect()``, DuckDB with every table as a view and the stitched views;
  ``snapshot``: a Delta snapshot as a read_parquet view (no Arrow dataset scan);
  ``window``: the --since/--until range every table is cut to;
  ``analyses``: the named SQL views; ``funnel_cache``: the funnel's per-day counts kept between
  connections (only changed days recomputed); ``reports``: `webhouse report`; `report/`: the HTML report
  (`webhouse report html`); ``cli``: the commands;
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from pipeline.settings import Settings

__all__ = ["connect"]


def connect(settings: Settings | None = None) -> duckdb.DuckDBPyConnection:
    """DuckDB with every webhouse table, the stitched views and the analyses (see ``sinks.duck``)."""
    from sinks.duck import connect as _connect

    return _connect(settings)
