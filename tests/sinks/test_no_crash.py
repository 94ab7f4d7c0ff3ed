"""DuckDB over Delta snapshots never crashes: `webhouse sql -c` and `connect()` in fresh processes.

The bug this names: DuckDB scanning deltalake's Arrow dataset died at exit (exit 139, an
abort) or hung after a ``LIMIT`` query. A crash only shows in a process of its own, so every
run is a subprocess over a table of many files and partitions: 20 runs, each running every
kind of query (LIMIT, SELECT *, a join, an aggregate; each kind last in a quarter of the runs,
as the crash came at exit), asserting the exit code and the exact output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.sinks.land import Webhouse
from tools.records import T0, event, order

RUNS = 20
RUN_TIMEOUT_S = 60  # one process; the hang this names lasted past 30 s
# The whole test may take its 20 runs' caps: the default 300 s cut it short on a loaded machine
# (load average 30 on 2 cores: 16 s per `webhouse sql` for 1.7 s of CPU), while no run hung.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUNS * RUN_TIMEOUT_S + 60)]
DAYS = 12
CHANNELS = ("web", "ios", "email")
WEBHOUSE = str(Path(sys.executable).with_name("webhouse"))

QUERIES = {
    "limit": ("SELECT message_id FROM events ORDER BY message_id LIMIT 1", [{"message_id": "m-00-email-0"}]),
    "select_star": ("SELECT * FROM events LIMIT 1", None),
    "join": (
        "SELECT count(*) AS n FROM events e JOIN orders o ON o.message_id = e.message_id",
        [{"n": DAYS}],
    ),
    "aggregate": (
        "SELECT channel, count(*) AS n, count(DISTINCT event_date) AS days FROM events "
        "GROUP BY channel ORDER BY channel",
        [{"channel": c, "n": DAYS * 3 + (DAYS if c == "web" else 0), "days": DAYS} for c in sorted(CHANNELS)],
    ),
}
KINDS = sorted(QUERIES)


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Events over 12 days x 3 channels, landed in 12 commits (one file per partition each)."""
    root = tmp_path_factory.mktemp("webhouse")
    wh = Webhouse(root)
    for d in range(DAYS):
        at = T0 + timedelta(days=d)
        records = [
            event(f"m-{d:02}-{c}-{i}", name="Product Viewed", channel=c, at=at, user_id=f"u{i}")
            for c in CHANNELS
            for i in range(3)
        ]
        records.append(order(f"o-{d:02}", f"order-{d}", [("p1", 10.0, 1)], user_id="u0", at=at))
        wh.events(records)
    assert len(list((root / "events").rglob("*.parquet"))) >= DAYS * len(CHANNELS)
    return root


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "WEBHOUSE_WEBHOUSE__ROOT": str(root), "WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET": "x"}


def _event_columns() -> list[str]:
    from sinks.pii import PiiHasher
    from sinks.tables import build_tables, default_specs

    (events,) = [t for t in build_tables(PiiHasher("x"), default_specs("raw")) if t.name == "events"]
    return list(events.arrow_schema.names)


def _order(run: int) -> list[str]:
    """The kinds in the order of one run: each kind comes last in a quarter of the runs."""
    k = run % len(KINDS)
    return KINDS[k + 1 :] + KINDS[: k + 1]


def _check(kind: str, rows: list[dict[str, object]], columns: list[str]) -> None:
    expected = QUERIES[kind][1]
    if expected is None:  # SELECT * LIMIT 1: any one landed row, with every column of the table
        assert len(rows) == 1 and list(rows[0]) == columns
        assert str(rows[0]["message_id"])[:2] in ("m-", "o-")
    else:
        assert rows == expected, kind


def _run(args: list[str], root: Path, run: int) -> subprocess.CompletedProcess[str]:
    """One fresh process; past its cap, a failure saying what it had printed (a hang after the
    answers is the bug this names, silence a slow start on a loaded machine)."""
    try:
        return subprocess.run(args, env=_env(root), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out, err = (s.decode() if isinstance(s, bytes) else s or "" for s in (exc.stdout, exc.stderr))
        pytest.fail(
            f"run {run}: no exit within {RUN_TIMEOUT_S} s; stdout so far {out[-500:]!r}, "
            f"stderr {err[-500:]!r}"
        )


def test_webhouse_sql_exits_cleanly_every_time(many_files: Path) -> None:
    columns = _event_columns()
    for run in range(RUNS):
        kinds = _order(run)
        done = _run(
            [WEBHOUSE, "sql", "--format", "json", "-c", ";\n".join(QUERIES[k][0] for k in kinds)],
            many_files,
            run,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results = done.stdout.rstrip("\n").split("\n\n")
        assert len(results) == len(kinds)
        for kind, text in zip(kinds, results, strict=True):
            _check(kind, [json.loads(line) for line in text.splitlines()], columns)


CONNECT_SCRIPT = """
import json, sys
from sinks import connect
con = connect()
queries = {
    "limit": lambda: con.sql("SELECT message_id FROM events ORDER BY message_id LIMIT 1").fetchall(),
    "select_star": lambda: len(con.sql("SELECT * FROM orders LIMIT 3").to_arrow_table()),
    "join": lambda: con.sql("SELECT count(*) FROM events e JOIN orders o USING (message_id)").fetchall(),
    "aggregate": lambda: con.sql("SELECT count(DISTINCT event_date) FROM events").fetchall(),
}
print(json.dumps({k: queries[k]() for k in sys.argv[1:]}))
"""


def test_connect_in_a_fresh_process_exits_cleanly_every_time(many_files: Path) -> None:
    expected = {"limit": [["m-00-email-0"]], "select_star": 3, "join": [[DAYS]], "aggregate": [[DAYS]]}
    for run in range(RUNS):
        done = _run([sys.executable, "-c", CONNECT_SCRIPT, *_order(run)], many_files, run)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout) == expected
