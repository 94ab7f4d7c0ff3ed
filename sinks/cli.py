"""`webhouse` subcommands of the webhouse: sink, compact, vacuum, forget, sql, report."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from pipeline.errors import SettingsError
from pipeline.settings import Settings


def _tables(settings: Settings, names: str | None) -> list[Any]:
    from sinks.pii import PiiHasher
    from sinks.tables import build_tables, default_specs

    specs = default_specs(settings.webhouse.events_source)
    if names:
        wanted = {n.strip() for n in names.split(",") if n.strip()}
        unknown = wanted - {s.name for s in specs}
        if unknown:
            raise SettingsError(f"unknown tables: {', '.join(sorted(unknown))}")
        specs = [s for s in specs if s.name in wanted]
    return build_tables(PiiHasher(settings.webhouse.pii_hmac_secret), specs)


def _sink(args: argparse.Namespace, settings: Settings) -> int:
    """Land until SIGTERM/SIGINT (stopped within ``health.stop_within_s``); exit 3 when the
    watchdog finds no progress while there is work, so that a supervisor restarts the sink."""
    from pipeline.health import EXIT_STALLED, Health, StallExit, Watchdog, stop_on_signals
    from pipeline.metrics_http import serve_metrics
    from sinks.metrics import SinkMetrics
    from sinks.runner import SinkRunner

    metrics = SinkMetrics()
    if args.metrics_port is not None:
        settings = settings.model_copy(
            update={"metrics": settings.metrics.model_copy(update={"port": args.metrics_port})}
        )
    health = Health("sink", settings.health.stall_after_s)
    serve_metrics(settings, "sink", metrics.registry, health)
    runner = SinkRunner(settings, _tables(settings, args.tables), metrics=metrics, health=health)
    stop = threading.Event()
    stop_on_signals(stop.set, "sink", settings.health.stop_within_s)
    watchdog = Watchdog(health, StallExit(stop, grace_s=settings.health.stop_within_s)).start()
    try:
        landed = runner.run(stop, exit_when_idle=args.exit_when_idle, assign_all=args.assign_all)
    finally:
        watchdog.close()
    print(f"landed {landed} rows")
    return EXIT_STALLED if health.stalled else 0


def register(sub: Any) -> None:
    sink = sub.add_parser("sink", help="land the Kafka topics into the webhouse tables (Delta Lake)")
    sink.add_argument("--tables", help="comma-separated subset of tables (default: all)")
    sink.add_argument("--exit-when-idle", action="store_true", help="stop once every partition is landed")
    sink.add_argument(
        "--assign-all", action="store_true", help="own every partition without a consumer group (one sink)"
    )
    sink.add_argument("--metrics-port", type=int, help="Prometheus port (0: none; default metrics.port)")
    sink.set_defaults(func=_sink)
    register_maintenance(sub)


def _specs(settings: Settings, names: str | None) -> list[Any]:
    return [t.spec for t in _tables(settings, names)]


def _print_table(rel: Any, fmt: str) -> None:
    import csv
    import json
    import sys

    if fmt == "table":
        rel.show(max_rows=10_000, max_width=250)
        return
    columns = rel.columns
    rows = rel.fetchall()
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))


def one_line(exc: BaseException) -> str:
    """DuckDB's message up to its first blank line (the error and any "Did you mean"), on one line."""
    lines = []
    for line in str(exc).splitlines():
        if not line.strip() or line.startswith("LINE "):
            break
        lines.append(line.strip())
    return " ".join(lines) or type(exc).__name__


def _connect(settings: Settings, args: argparse.Namespace | None = None) -> Any:
    from sinks.duck import connect
    from sinks.locate import locate
    from sinks.window import Window

    window = Window.parse(getattr(args, "since", None), getattr(args, "until", None))
    return connect(locate(settings), window)


def _run(con: Any, text: str, fmt: str) -> None:
    """Run ``text`` (one or more statements) and print each result."""
    import duckdb

    from pipeline.errors import QueryError

    try:
        for i, parsed in enumerate(con.extract_statements(text)):
            rel = con.sql(parsed)
            if rel is None:
                continue
            if i and fmt != "table":
                print()  # a blank line between the results of several statements
            _print_table(rel, fmt)
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc


TABLES_SQL = """SELECT table_name AS name, lower(table_type) AS kind FROM information_schema.tables
ORDER BY kind, name"""


def _dot_command(con: Any, line: str, fmt: str) -> bool:
    """The shell's dot commands: .tables, .schema [NAME]; True when ``line`` was one."""
    words = line.strip().rstrip(";").split()
    if not words or words[0] not in (".tables", ".schema"):
        return False
    if words[0] == ".tables":
        _print_table(con.sql(TABLES_SQL), fmt)
    elif len(words) > 1:
        _run(con, f"DESCRIBE {words[1]}", fmt)
    else:
        _print_table(
            con.sql(
                "SELECT table_name AS name, column_name AS column, data_type AS type "
                "FROM information_schema.columns ORDER BY table_name, ordinal_position"
            ),
            fmt,
        )
    return True


@contextlib.contextmanager
def _traceback_if(debug: bool) -> Iterator[None]:
    """With --debug a failed query raises DuckDB's own error (a traceback), else one line."""
    from pipeline.errors import QueryError

    try:
        yield
    except QueryError as exc:
        if debug and exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.errors import QueryError

    con = _connect(settings, args)
    if args.command_text:
        with _traceback_if(args.debug):
            _run(con, args.command_text, args.format)
        return 0
    print(
        "webhouse SQL (DuckDB). .tables lists tables and views, .schema NAME their columns; "
        "end a statement with ';', quit with .quit"
    )
    buffer: list[str] = []
    while True:
        try:
            line = input("webhouse> " if not buffer else "      ..> ")
        except EOFError:
            return 0
        if line.strip() in (".quit", ".exit", "\\q"):
            return 0
        try:
            if not buffer and _dot_command(con, line, args.format):
                continue
            buffer.append(line)
            if not line.rstrip().endswith(";"):
                continue
            statement, buffer = "\n".join(buffer), []
            _run(con, statement, args.format)
        except QueryError as exc:  # an analyst's typo must not end the session
            print(f"error: {exc}")


def _report(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb

    from pipeline.errors import QueryError
    from sinks.reports import sections

    params = dict(p.split("=", 1) for p in args.param)
    con = _connect(settings, args)
    if args.name == "html":
        return _html_report(con, args)
    with _traceback_if(args.debug):
        try:
            for section in sections(args.name, params, con, settings.webhouse):
                print(f"== {section.title}")
                _print_table(con.sql(section.sql(), params=list(section.params) or None), args.format)
        except duckdb.Error as exc:
            raise QueryError(one_line(exc)) from exc
    return 0


def _html_report(con: Any, args: argparse.Namespace) -> int:
    from pathlib import Path

    from sinks.report import read_figures, write_html

    out = write_html(read_figures(con), Path(args.out), title=args.title)
    print(f"report: {out}")
    return 0


def _compact(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.maintenance import auto_compact, compact
    from sinks.store import DeltaStore

    store, specs = DeltaStore(settings.webhouse), _specs(settings, args.tables)
    if args.every is None:
        for name, (removed, added) in compact(store, specs).items():
            print(f"{name}: {removed} files compacted into {added}")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        threshold = args.min_small_files or settings.webhouse.compact_min_small_files
        for name, (removed, added) in auto_compact(store, specs, threshold).items():
            print(f"{name}: {removed} files compacted into {added}", flush=True)
        stop.wait(args.every)
    return 0


def _vacuum(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.maintenance import retention_hours, vacuum
    from sinks.store import DeltaStore

    result = vacuum(DeltaStore(settings.webhouse), _specs(settings, args.tables), dry_run=args.dry_run)
    for name, files in result.items():
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{name}: {verb} {files} files older than {retention_hours(settings.webhouse, name)} h")
    return 0


def _forget(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.collector.pseudonymise import Pseudonymiser
    from pipeline.kafka_forget import record_erasure, tombstone_customer
    from pipeline.topics import Topics
    from sinks.maintenance import forget
    from sinks.store import DeltaStore

    # The collector stored an e-mail address given as user id as its pseudonym: forget that.
    pii = Pseudonymiser.from_settings(settings.collector.pii, settings.webhouse.pii_hmac_secret)
    given = args.customer_id.strip()
    customer_id = pii.text(given) if settings.collector.pii.enabled else given
    total = 0
    for f in forget(DeltaStore(settings.webhouse), _specs(settings, None), customer_id):
        total += f.rows
        print(
            f"{f.table}: removed {f.rows} rows in {f.partitions} partitions, "
            f"{f.files_vacuumed} files vacuumed"
        )
    print(f"customer {customer_id}: {total} rows removed")
    if args.tables_only:
        return 0
    bootstrap, topics = settings.kafka.bootstrap_servers, Topics.from_settings(settings.kafka)
    tombstoned, devices = tombstone_customer(bootstrap, topics, customer_id)
    for t in tombstoned:
        print(f"{t.topic}: {t.keys} keys tombstoned")
    record_erasure(bootstrap, topics, customer_id, devices)
    print(f"erasure recorded on {topics.erasures} ({len(devices)} devices)")
    return 0


def _add_window(parser: argparse.ArgumentParser) -> None:
    for flag, doc in (("--since", "from this date or ISO time (inclusive)"), ("--until", "to (exclusive)")):
        parser.add_argument(flag, metavar="DATE", help=f"{doc}; every table is cut to the range first")


def register_maintenance(sub: Any) -> None:
    from sinks.reports import REPORTS

    fmt = {"choices": ["table", "csv", "json"], "default": "table"}
    sql = sub.add_parser("sql", help="DuckDB over the webhouse tables (no extension download)")
    sql.add_argument("-c", dest="command_text", help="run these statements (separated by ;) and exit")
    sql.add_argument("--format", **fmt)
    sql.add_argument("--debug", action="store_true", help="a failing query prints its traceback")
    _add_window(sql)
    sql.set_defaults(func=_sql)
    report = sub.add_parser(
        "report", help="print a named analysis, or write the HTML report (webhouse report html --out FILE)"
    )
    report.add_argument("name", choices=(*REPORTS, "html"))
    report.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. customer_id=42, now=2026-03-01T12:00:00Z, days=30, steps=A,B,C",
    )
    report.add_argument("--format", **fmt)
    report.add_argument("--debug", action="store_true", help="a failing query prints its traceback")
    report.add_argument("--out", default="webhouse-report.html", help="html: the file to write")
    report.add_argument("--title", default="webhouse report", help="html: the report's title")
    _add_window(report)
    report.set_defaults(func=_report)
    for name, fn, doc in (
        ("compact", _compact, "rewrite small files into large ones (safe while sinks run)"),
        ("vacuum", _vacuum, "delete files older than each table's retention"),
    ):
        p = sub.add_parser(name, help=doc)
        p.add_argument("--tables", help="comma-separated subset of tables (default: all)")
        if name == "vacuum":
            p.add_argument("--dry-run", action="store_true")
        else:
            p.add_argument(
                "--every",
                type=float,
                metavar="SECONDS",
                help="keep running: every SECONDS, compact the tables with many small files",
            )
            p.add_argument(
                "--min-small-files",
                type=int,
                help="with --every: compact a table once a partition holds this many small files "
                "(default: webhouse.compact_min_small_files)",
            )
        p.set_defaults(func=fn)
    forget = sub.add_parser("forget", help="remove a customer (and linked devices) from every table, durably")
    forget.add_argument("customer_id", help="the customer id (an e-mail address is taken as its pseudonym)")
    forget.add_argument(
        "--tables-only", action="store_true", help="only the tables: no Kafka tombstones, no erasure record"
    )
    forget.set_defaults(func=_forget)
