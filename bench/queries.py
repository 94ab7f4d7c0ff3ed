"""How long the analysts' heaviest reports take over a big webhouse: funnel, RFM, cohorts, paths.

Generates N events (default 10M) over a year straight into the Delta tables (no Kafka, no
simulator: Arrow compute, so generation is seconds, not hours): visitors, a share of them
customers, a funnel of Product Viewed > Added > Checkout Started > Order Completed, page views,
campaigns, three channels; every completed order also lands one order line. Then, in-process,
``sinks.connect()`` and each report's view, in interleaved rounds (every query once per round,
so a noisy neighbour hits them alike): min and median of wall time and of process CPU time
(all DuckDB threads), and the funnel also in its general fold shape (the shape before the
fast one, same answers). ``--one-file`` also times the funnel over the same events copied
into a couple of Parquet files (what the day x channel partitions cost; answers checked equal).
Not a test: numbers depend on the machine.

    .venv/bin/python bench/queries.py [--events 10000000] [--days 365] [--runs 5] [--root DIR] [--one-file]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from scratch import scratch_dir

from pipeline.settings import Settings, WebhouseSettings
from sinks.analyses import funnel_sql, paths_sql
from sinks.duck import connect
from sinks.pii import PiiHasher
from sinks.tables import Table, build_tables, default_specs

START = datetime(2025, 11, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000
# (event, type, share of events): the funnel thins out step by step; the rest is page views.
KINDS = [
    ("Product Viewed", "track", 0.30),
    ("Product Added", "track", 0.08),
    ("Checkout Started", "track", 0.03),
    ("Order Completed", "track", 0.015),
    ("Page Viewed", "page", 0.575),
]
CHANNELS = ["web", "ios", "android"]
CAMPAIGNS = ["spring_sale", "winback", "newsletter", "black_friday", None, None, None, None]
QUERIES = {
    "funnel": "SELECT * FROM funnel_overall",
    "funnel by campaign": "SELECT * FROM funnel_by_campaign",
    "funnel (live, no cache)": "SELECT * FROM funnel_live_overall",
    "funnel (general fold)": "SELECT * FROM funnel_fold_overall",
    "rfm": "SELECT * FROM rfm_segments",
    "cohort": "SELECT * FROM cohort_retention",
    "top paths": "SELECT * FROM top_paths",
    "top paths (device-days)": "SELECT * FROM top_paths_by_day",
}
SESSION_GAP = "INTERVAL 30 MINUTE"


def _pick(values: list[str | None], r: pa.Array) -> pa.Array:
    """``values[floor(r * len)]`` for uniform ``r`` in [0, 1)."""
    idx = pc.cast(pc.floor(pc.multiply(r, len(values))), pa.int32())
    return pc.take(pa.array(values, pa.string()), idx)


def _kind_index(r: pa.Array) -> pa.Array:
    """The index into KINDS of each uniform draw: the first cumulative share it falls under."""
    cuts, edge = [], 0.0
    for _, _, share in KINDS:
        edge += share
        cuts.append(edge)
    chosen = pc.if_else(pc.is_valid(r), pa.scalar(len(KINDS) - 1, pa.int32()), pa.scalar(None, pa.int32()))
    for i in range(len(cuts) - 2, -1, -1):
        chosen = pc.if_else(pc.less(r, cuts[i]), pa.scalar(i, pa.int32()), chosen)
    return chosen


def _str_ids(prefix: str, ints: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(ints, pa.string()), "")


def events_chunk(
    table: Table,
    first: int,
    n: int,
    day0: int,
    days: int,
    visitors: int,
    customers: int,
    visitor0: int = 0,
) -> pa.Table:
    """``n`` events with ids from ``first``, times uniform over ``days`` days from day ``day0``,
    visitors uniform in ``[visitor0, visitor0 + visitors)``."""
    rand = [pc.random(n) for _ in range(6)]
    micros = pc.add(
        pc.cast(pc.floor(pc.multiply(rand[0], days * DAY_US)), pa.int64()),
        int(START.timestamp() * 1_000_000) + day0 * DAY_US,
    )
    event_time = pc.cast(micros, pa.timestamp("us", tz="UTC"))
    visitor = pc.add(pc.cast(pc.floor(pc.multiply(rand[1], visitors)), pa.int64()), visitor0)
    kind = _kind_index(rand[2])
    names = pc.take(pa.array([k for k, _, _ in KINDS]), kind)
    types = pc.take(pa.array([t for _, t, _ in KINDS]), kind)
    identified = pc.less(visitor, customers)
    columns = {
        "message_id": _str_ids("m", pa.array(range(first, first + n), pa.int64())),
        "type": types,
        "event": pc.if_else(pc.equal(types, "track"), names, pa.scalar(None, pa.string())),
        "name": pc.if_else(pc.equal(types, "page"), pa.scalar("Home"), pa.scalar(None, pa.string())),
        "channel": _pick(list(CHANNELS), rand[3]),
        "anonymous_id": _str_ids("a", visitor),
        "customer_id": pc.if_else(identified, _str_ids("c", visitor), pa.scalar(None, pa.string())),
        "user_id": pc.if_else(identified, _str_ids("c", visitor), pa.scalar(None, pa.string())),
        "event_time": event_time,
        "timestamp": event_time,
        "event_date": pc.strftime(event_time, "%Y-%m-%d"),
        "campaign": _pick(CAMPAIGNS, rand[4]),
        "page_path": pc.if_else(pc.equal(types, "page"), pa.scalar("/"), pa.scalar(None, pa.string())),
        "is_bot": pc.less(rand[5], 0.0),  # never
        # As the worker sends events on: the session key, no session id (events_sessioned).
        "enrichment_session_key": _str_ids("a", visitor),
    }
    schema = table.arrow_schema
    arrays = []
    for field in schema:
        if field.name in columns:
            arrays.append(pc.cast(columns[field.name], field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def orders_of(table: Table, events: pa.Table) -> pa.Table:
    """One completed order line per identified Order Completed event."""
    done = events.filter(
        pc.and_(pc.equal(events["event"], "Order Completed"), pc.is_valid(events["customer_id"]))
    )
    n = done.num_rows
    amount = pc.round(pc.add(pc.multiply(pc.random(n), 120.0), 5.0), 2)
    columns = {
        "order_id": done["message_id"],
        "kind": pa.array(["completed"] * n),
        "line_no": pa.array([0] * n, pa.int32()),
        "message_id": done["message_id"],
        "customer_id": done["customer_id"],
        "anonymous_id": done["anonymous_id"],
        "channel": done["channel"],
        "campaign": done["campaign"],
        "event_time": done["event_time"],
        "order_date": done["event_date"],
        "currency": pa.array(["EUR"] * n),
        "order_revenue": amount,
        "product_id": pa.array(["p1"] * n),
        "quantity": pa.array([1] * n, pa.int32()),
        "amount": amount,
    }
    arrays = []
    for field in table.arrow_schema:
        if field.name in columns:
            arrays.append(pc.cast(columns[field.name], field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=table.arrow_schema)


def identity_links(table: Table, first: int, last: int, seen: datetime) -> pa.Table:
    """Links of every tenth anonymous visitor ``v`` in ``[first, last)`` to customer ``c<v // 10>``,
    seen at ``seen``: their anonymous events are stitched to that customer (and merge with its
    visitor-days). With ``first`` at or above the customers, ``v // 10`` is a customer."""
    anon = pa.array([v for v in range(first, last) if v % 10 == 0], pa.int64())
    n = len(anon)
    columns = {
        "anonymous_id": _str_ids("a", anon),
        "customer_id": _str_ids("c", pa.array([v // 10 for v in anon.to_pylist()], pa.int64())),
        "first_seen": pa.array([seen] * n, pa.timestamp("us", tz="UTC")),
        "last_seen": pa.array([seen] * n, pa.timestamp("us", tz="UTC")),
        "source_type": pa.array(["identify"] * n),
    }
    arrays = [
        pc.cast(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in table.arrow_schema
    ]
    return pa.Table.from_arrays(arrays, schema=table.arrow_schema)


def population(total: int) -> tuple[int, int]:
    """(visitors, customers) of ``total`` events; visitors below ``customers`` are identified."""
    return max(1000, total // 50), max(500, total // 200)


def generate(root: Path, total: int, days: int, chunks: int) -> None:
    tables = {t.name: t for t in build_tables(PiiHasher("bench"), default_specs())}
    events, orders = tables["events"], tables["orders"]
    visitors, customers = population(total)
    # Every tenth anonymous visitor's first half was linked to a customer (c<v/10> < customers).
    write_deltalake(
        str(root / "identity_map"),
        identity_links(tables["identity_map"], customers, (customers + visitors) // 2, START),
    )
    per = total // chunks
    for k in range(chunks):
        day0, span = k * days // chunks, (k + 1) * days // chunks - k * days // chunks
        n = per if k < chunks - 1 else total - per * (chunks - 1)
        batch = events_chunk(events, k * per, n, day0, span, visitors, customers)
        write_deltalake(
            str(root / "events"), batch, mode="append", partition_by=list(events.spec.partition_by)
        )
        write_deltalake(
            str(root / "orders"),
            orders_of(orders, batch),
            mode="append",
            partition_by=list(orders.spec.partition_by),
        )
        print(f"  generated {k * per + n:,} events", flush=True)
    write_sessions(root, tables["sessions"])


def write_sessions(root: Path, table: Table) -> None:
    """The visits of the generated events (a new visit after 30 minutes without an event), as the
    worker would have closed them, so ``top_paths`` finds each event's visit (events_sessioned)."""
    files = [uri.removeprefix("file://") for uri in DeltaTable(str(root / "events")).file_uris()]
    con = duckdb.connect()
    visits = con.sql(f"""
        WITH e AS (SELECT anonymous_id, event_time, message_id,
                          coalesce(event_time - lag(event_time) OVER w > {SESSION_GAP}, true)::INT AS new
                   FROM read_parquet({files!r})
                   WINDOW w AS (PARTITION BY anonymous_id ORDER BY event_time, message_id)),
             n AS (SELECT *, sum(new) OVER (PARTITION BY anonymous_id ORDER BY event_time, message_id
                                            ROWS UNBOUNDED PRECEDING) AS k FROM e)
        SELECT anonymous_id || '/' || k AS session_id, anonymous_id, min(event_time) AS start,
               max(event_time) AS "end", arg_min(message_id, (event_time, message_id)) AS first_event_id,
               arg_max(message_id, (event_time, message_id)) AS last_event_id, count(*) AS event_count,
               strftime(min(event_time), '%Y-%m-%d') AS session_date
        FROM n GROUP BY anonymous_id, k""").to_arrow_table()
    arrays = [
        pc.cast(visits[f.name], f.type)
        if f.name in visits.column_names
        else pa.nulls(visits.num_rows, f.type)
        for f in table.arrow_schema
    ]
    write_deltalake(
        str(root / "sessions"),
        pa.Table.from_arrays(arrays, schema=table.arrow_schema),
        partition_by=list(table.spec.partition_by),
    )
    print(f"  {visits.num_rows:,} visits", flush=True)


def grow(root: Path, total: int, days: int, step: int, old_links: int) -> str:
    """Day ``days + step`` of events (a day's share of ``total``): half from devices seen before,
    half from devices new that day, every tenth of those new ones signing in (a link); plus
    ``old_links`` links of anonymous devices seen all year (each recomputes the days they touch).
    Returns what was added."""
    tables = {t.name: t for t in build_tables(PiiHasher("bench"), default_specs())}
    visitors, customers = population(total)
    per_day = total // days
    fresh0 = visitors * (step + 1)  # beyond every earlier visitor id: devices never seen
    parts = [
        events_chunk(
            tables["events"],
            total * 2 + step * per_day,
            per_day // 2,
            days + step - 1,
            1,
            visitors,
            customers,
        ),
        events_chunk(
            tables["events"],
            total * 2 + step * per_day + per_day // 2,
            per_day - per_day // 2,
            days + step - 1,
            1,
            visitors // days,
            customers,
            fresh0,
        ),
    ]
    for batch in parts:
        write_deltalake(str(root / "events"), batch, mode="append", partition_by=["event_date", "channel"])
    seen = START + timedelta(days=days + step)
    links = identity_links(tables["identity_map"], fresh0, fresh0 + visitors // days, seen)
    old_first = (customers + visitors) // 2 + step * old_links * 10  # never linked before
    if old_links:
        old = identity_links(tables["identity_map"], old_first, old_first + old_links * 10, seen)
        links = pa.concat_tables([links, old])
    write_deltalake(str(root / "identity_map"), links, mode="append")
    return f"{per_day:,} events of a new day, {links.num_rows:,} new links ({old_links} of year-old devices)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--chunks", type=int, default=12, help="writes (each a span of days)")
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--no-metadata-cache", action="store_true", help="re-read every Parquet footer per query (as before)"
    )
    parser.add_argument("--root", type=Path, help="reuse (or keep) the generated tables here")
    parser.add_argument("--one-file", action="store_true", help="also the funnel over a one-file copy")
    parser.add_argument(
        "--increments",
        type=int,
        default=0,
        help="then add this many days, timing connect() + funnel after each",
    )
    parser.add_argument(
        "--old-links", type=int, default=0, help="each increment also links this many year-old devices"
    )
    args = parser.parse_args()
    if args.root is not None:
        measure(args, args.root)
        return
    with scratch_dir("webhouse-bench-") as root:
        measure(args, root)


def measure(args: argparse.Namespace, root: Path) -> None:
    """Generate the tables into ``root`` unless they are there, then time the queries."""
    if not (root / "events").exists():
        started = time.perf_counter()
        generate(root, args.events, args.days, args.chunks)
        print(
            f"generated {args.events:,} events over {args.days} days in {time.perf_counter() - started:.1f}s"
        )
    settings = Settings(webhouse=WebhouseSettings(root=str(root)))
    started = time.perf_counter()
    con = connect(settings)
    print(f"connect(): {time.perf_counter() - started:.2f}s")
    con.execute(funnel_sql(settings.webhouse.funnel_steps, "funnel_live"))
    con.execute(funnel_sql(settings.webhouse.funnel_steps, "funnel_fold", fold=True))
    # top_paths without finding each event's visit (device-days instead): what the join costs.
    by_day = paths_sql(find_visits=False).replace("page_views", "page_views_by_day")
    by_day = by_day.replace("top_paths", "top_paths_by_day").replace("page_transitions", "transitions_by_day")
    con.execute(by_day)
    if args.no_metadata_cache:
        con.execute("SET parquet_metadata_cache = false")
    ((events,),) = con.sql("SELECT count(*) FROM events").fetchall()
    files = len(DeltaTable(str(root / "events")).file_uris())
    print(f"{events:,} events in {files:,} files; {args.runs} runs each, in-process")
    queries = [(name, con, sql) for name, sql in QUERIES.items()]
    if args.one_file:
        one = one_file_events(con, settings, root)
        assert one.sql(QUERIES["funnel"]).fetchall() == con.sql(QUERIES["funnel"]).fetchall()
        queries.append(("funnel (one-file copy)", one, QUERIES["funnel"]))
    time_rounds(queries, args.runs)
    for step in range(args.increments):
        print(f"increment {step + 1}: {grow(root, args.events, args.days, step, args.old_links)}")
        time_connections(settings, f"increment {step + 1}")


def time_connections(settings: Settings, label: str) -> None:
    """What an analyst waits for after new data: ``connect()`` and the funnel, with the per-day
    cache (it refreshes the changed days), then without (the whole funnel); answers checked equal."""
    answers = []
    for cache in (True, False):
        cfg = settings.model_copy(
            update={"webhouse": settings.webhouse.model_copy(update={"funnel_cache": cache})}
        )
        wall, cpu = time.perf_counter(), time.process_time()
        con = connect(cfg)
        connected = time.perf_counter() - wall, time.process_time() - cpu
        answers.append(con.sql(QUERIES["funnel"]).fetchall())
        done = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"  {label}, {'cached' if cache else 'live'}: connect wall {connected[0]:.2f}s "
            f"cpu {connected[1]:.2f}s, + funnel wall {done[0]:.2f}s cpu {done[1]:.2f}s"
        )
    assert answers[0] == answers[1], answers


def one_file_events(
    con: duckdb.DuckDBPyConnection, settings: Settings, root: Path
) -> duckdb.DuckDBPyConnection:
    """A second connection whose ``events`` are the same rows and types, in one file per thread."""
    copy = root / "events-one-file"
    if not copy.exists():
        con.execute(f"COPY (SELECT * FROM events) TO '{copy}' (FORMAT parquet, PER_THREAD_OUTPUT true)")
    one = connect(settings)
    one.execute(f"CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM read_parquet('{copy}/*.parquet')")
    one.sql("SELECT count(*) FROM events").fetchall()
    return one


def time_rounds(queries: list[tuple[str, duckdb.DuckDBPyConnection, str]], runs: int) -> None:
    """Every query once per round, ``runs`` rounds; min and median of wall and CPU time."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in queries}
    rows: dict[str, int] = {}
    for _ in range(runs):
        for name, con, sql in queries:
            wall, cpu = time.perf_counter(), time.process_time()
            rows[name] = len(con.sql(sql).fetchall())
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    for name, runs_ in times.items():
        walls, cpus = [w for w, _ in runs_], [c for _, c in runs_]
        print(
            f"{name:24} wall min {min(walls):6.2f}s median {statistics.median(walls):6.2f}s   "
            f"cpu min {min(cpus):6.2f}s median {statistics.median(cpus):6.2f}s  ({rows[name]} rows)"
        )


if __name__ == "__main__":
    main()
