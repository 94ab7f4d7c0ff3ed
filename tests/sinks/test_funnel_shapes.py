"""The fast funnel (distinct steps, no ordered aggregate) gives exactly the general fold's answers.

Random events straight into a DuckDB table named ``events_stitched`` (the only relation the funnel
reads): few visitors, days and times, so visitor-days hold several steps, out-of-order steps, ties
on time between steps, events with no time, bots, other events and page views. The campaign is a
function of (visitor, day, time): ``arg_min`` on a tie then has one answer, whichever row it picks.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from sinks.analyses import funnel_sql

STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
CAMPAIGNS = ["spring", "winback", None, None]


def _events(rng: random.Random, n: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for _ in range(n):
        visitor, day = f"v{rng.randrange(40)}", rng.randrange(4)
        minute = rng.randrange(30)
        at = None if rng.random() < 0.03 else T0 + timedelta(days=day, minutes=minute)
        campaign = CAMPAIGNS[(int(visitor[1:]) * 7 + day * 3 + (minute if at else 5)) % len(CAMPAIGNS)]
        kind = rng.random()
        event = rng.choice([*STEPS, *STEPS[:2], "Cart Viewed"]) if kind < 0.9 else None
        rows.append(
            (
                visitor,
                (T0 + timedelta(days=day)).strftime("%Y-%m-%d"),
                at,
                campaign,
                "track" if event else "page",
                event,
                rng.random() < 0.02,
            )
        )
    return rows


def _connection(rows: list[tuple[object, ...]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE events_stitched (visitor_id VARCHAR, event_date VARCHAR, event_time TIMESTAMPTZ, "
        "campaign VARCHAR, type VARCHAR, event VARCHAR, is_bot BOOLEAN)"
    )
    con.executemany("INSERT INTO events_stitched VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return con


@pytest.mark.parametrize("seed", range(8))
def test_fast_funnel_equals_the_general_fold(seed: int) -> None:
    rng = random.Random(seed)
    con = _connection(_events(rng, rng.choice([300, 1000, 3000])))
    steps = STEPS[: rng.choice([1, 2, 3, 4])]
    con.execute(funnel_sql(steps, "fast"))
    con.execute(funnel_sql(steps, "ref", fold=True))
    assert "list_sort" in funnel_sql(steps, "fast") and "list_sort" not in funnel_sql(steps, "ref", fold=True)
    for view in ("", "_overall", "_by_campaign"):
        fast = con.sql(f"SELECT * FROM fast{view}").fetchall()
        assert fast == con.sql(f"SELECT * FROM ref{view}").fetchall()
        assert fast  # something to compare
    last = con.sql("SELECT visitors FROM ref_overall WHERE step_no = ?", params=[len(steps)])
    ((deepest,),) = last.fetchall()
    assert deepest > 0  # some visitor-days reach the last step
