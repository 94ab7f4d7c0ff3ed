"""DuckDB over the webhouse, offline: every table a view over its current Delta snapshot.

Each Delta table is a view DuckDB reads with ``read_parquet`` over the snapshot's files
(``sinks.snapshot``: partition values included, the table's schema applied to older
files), so nothing needs DuckDB's delta or httpfs extensions, which would be downloaded;
an s3:// root is read through deltalake's own object store. A table not landed yet is
an empty relation with its declared columns, so every analysis view still binds.

On top: the stitched views (retroactive identity attribution) and the named
analyses of ``sinks.analyses``.
"""

from __future__ import annotations

from functools import partial

import duckdb
from deltalake import DeltaTable

from pipeline.settings import Settings, load_settings
from sinks.analyses import FunnelSource, install_analyses, sessioned_sql, stitched_events_sql
from sinks.funnel_cache import CACHED_DAYS, LIVE_EVENTS, install_cached_funnel
from sinks.pii import PiiHasher
from sinks.snapshot import duck_types, empty_view_sql, register_snapshot
from sinks.store import DeltaStore
from sinks.tables import build_tables, default_specs
from sinks.window import Window

STITCHING_SQL = """
-- One customer per device: the most recently seen link wins (a shared device follows its last user).
CREATE OR REPLACE TEMP VIEW identity_latest AS
SELECT anonymous_id, arg_max(customer_id, last_seen) AS customer_id
FROM identity_map GROUP BY anonymous_id;

-- Retroactive stitching (sinks.analyses.stitched_events_sql).
CREATE OR REPLACE TEMP VIEW events_stitched AS {stitched};

-- Sessions a late event merged into a later one are superseded by it.
CREATE OR REPLACE TEMP VIEW sessions_current AS
SELECT s.* FROM sessions s
WHERE s.session_id NOT IN (SELECT m FROM (SELECT unnest(merged_session_ids) AS m FROM sessions)
                           WHERE m IS NOT NULL);

-- Each event with its visit (sinks.analyses.sessioned_sql).
CREATE OR REPLACE TEMP VIEW events_sessioned AS {sessioned};

CREATE OR REPLACE TEMP VIEW sessions_stitched AS
SELECT s.*, coalesce(s.customer_id, i.customer_id) AS stitched_customer_id
FROM sessions_current s LEFT JOIN identity_latest i ON i.anonymous_id = s.anonymous_id;

CREATE OR REPLACE TEMP VIEW orders_stitched AS
SELECT o.*, coalesce(o.customer_id, i.customer_id) AS stitched_customer_id
FROM orders o LEFT JOIN identity_latest i ON i.anonymous_id = o.anonymous_id;
"""

IDENTITY_CONFLICTS_SQL = """
-- Ids the worker's identity guards refused to merge (docs/identity.md): one row per rule and id,
-- from the worker's dead letters with reason identity_rejected (detail is JSON).
CREATE OR REPLACE TEMP VIEW identity_conflicts AS
WITH r AS (
  SELECT json_extract_string(detail, '$.rule') AS rule, json_extract_string(detail, '$.field') AS field,
         json_extract_string(detail, '$.value') AS value,
         json_extract_string(detail, '$.anonymous_id') AS anonymous_id, failed_at
  FROM dead_letters WHERE stage = 'worker' AND reason = 'identity_rejected')
SELECT rule, field, value, count(DISTINCT anonymous_id) AS devices, count(*) AS rejections,
       min(failed_at) AS first_rejected_at, max(failed_at) AS last_rejected_at
FROM r GROUP BY rule, field, value ORDER BY devices DESC, rule, value;
"""

PROFILES_SQL = """
-- The latest profile per customer, from the history the sink keeps.
CREATE OR REPLACE TEMP VIEW profiles AS
SELECT * FROM profiles_history
QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY {version}updated_at DESC NULLS LAST,
                           last_seen DESC NULLS LAST) = 1;
"""


def register_tables(
    con: duckdb.DuckDBPyConnection, settings: Settings, window: Window | None = None
) -> dict[str, DeltaTable | None]:
    """Register every declared table (landed or empty), cut to ``window``; returns each name's
    snapshot (None: not landed yet)."""
    window = window or Window()
    store = DeltaStore(settings.webhouse)
    hasher = PiiHasher(settings.webhouse.pii_hmac_secret)
    snapshots: dict[str, DeltaTable | None] = {}
    for table in build_tables(hasher, default_specs(settings.webhouse.events_source)):
        dt = store.open(table.name)
        if dt is None:
            con.execute(empty_view_sql(table.name, duck_types(con, table.arrow_schema)))
        else:
            register_snapshot(con, table.name, dt, partial(window.where, table.name))
        snapshots[table.name] = dt
    return snapshots


def funnel_source(
    con: duckdb.DuckDBPyConnection, settings: Settings, events: DeltaTable | None, window: Window
) -> FunnelSource:
    """The funnel over its per-day cache (``sinks.funnel_cache``) when it can be kept, else live."""
    cfg = settings.webhouse
    if not cfg.funnel_cache or events is None:
        return FunnelSource()
    refreshed = install_cached_funnel(con, cfg.root, cfg.funnel_steps, events, window)
    return FunnelSource() if refreshed is None else FunnelSource(LIVE_EVENTS, CACHED_DAYS)


def connect(settings: Settings | None = None, window: Window | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with every table, the stitched views and the analyses, for notebooks.

    The views show the snapshot current when this was called; call again for fresher data.
    ``window`` cuts every table to a date range first (``sinks.window``), so every analysis
    covers that range.
    """
    settings = settings or load_settings()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Delta never rewrites a file in place, so Parquet footers can be kept: a query over a
    # snapshot of a thousand small files otherwise re-reads every footer (~1 ms each) each time.
    con.execute("SET parquet_metadata_cache = true")
    window = window or Window()
    snapshots = register_tables(con, settings, window)
    names = set(snapshots)
    con.execute(
        STITCHING_SQL.format(
            stitched=stitched_events_sql("events"), sessioned=sessioned_sql("events_stitched")
        )
    )
    con.execute(IDENTITY_CONFLICTS_SQL)
    if "profiles_history" in names:
        # Versions are numbered since profile schema v2; a table written before has no column yet.
        columns = {row[0] for row in con.execute("DESCRIBE profiles_history").fetchall()}
        con.execute(PROFILES_SQL.format(version="version DESC, " if "version" in columns else ""))
    funnel = funnel_source(con, settings, snapshots.get("events"), window)
    install_analyses(con, settings.webhouse, settings.triggers.value_tiers, names, funnel)
    return con
