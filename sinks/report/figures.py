"""The report's figures, read from the webhouse with DuckDB: one query each, shared by the HTML
report, the demo's printed summary and the end-to-end test.

Time series are per UTC day over the whole span with every empty day present (a day without
alerts is a zero, not a missing bar), so a chart's axis is real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb


@dataclass(frozen=True, slots=True)
class Figures:
    counts: dict[str, int]
    span: tuple[str, str] | None  # first and last event day (UTC), None when no event
    events_by_channel: list[tuple[str, int]]
    events_by_day: list[tuple[str, int]]  # every day of the span
    orders: int
    revenue: float
    alerts_by_rule: list[tuple[str, str, int]]  # rule, status, alerts
    alerts_by_day: list[tuple[str, int]]  # fired alerts, every day from the first to the last alert
    funnel: list[tuple[str, int]]  # overall: step, visitor-days
    funnel_by_campaign: list[tuple[str, str, int]]  # campaign, step, visitor-days
    rfm_segments: list[tuple[str, int, float]]  # segment, customers, revenue
    value_tiers: list[tuple[str, int, float, float]]  # tier, customers, revenue, revenue share
    retention: list[tuple[str, int, float]]  # cohort month, month number, retention
    top_campaigns: list[tuple[str, int, int, int, int, float]]  # campaign, sent, opened, clicked, orders, rev
    top_paths: list[tuple[str, int]]
    dead_letters_by_reason: list[tuple[str, str, int]]  # stage, reason, count
    unavailable: dict[str, str] = field(default_factory=dict)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, missing: dict[str, str], name: str) -> list[Any]:
    """Rows of ``sql``; a table not landed yet (or a failing view) is recorded, never hidden."""
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    except duckdb.Error as exc:
        missing[name] = str(exc).splitlines()[0]
        return []


def per_day_sql(source: str, day: str) -> str:
    """Counts per UTC day of ``source`` (rows with a ``day`` DATE column), zero-filled between the
    first and the last day."""
    return f"""
WITH d AS (SELECT {day} AS day FROM {source}),
b AS (SELECT min(day) AS lo, max(day) AS hi FROM d),
c AS (SELECT day, count(*) AS n FROM d GROUP BY day)
SELECT strftime(g.day, '%Y-%m-%d'), coalesce(c.n, 0)
FROM b, (SELECT unnest(generate_series(b.lo, b.hi, INTERVAL 1 DAY))::DATE AS day FROM b) g
LEFT JOIN c ON c.day = g.day ORDER BY g.day"""


COUNTS = {
    "events": "SELECT count(*) FROM events",
    "sessions": "SELECT count(*) FROM sessions_current",
    "customers": "SELECT count(DISTINCT customer_id) FROM identity_map",
    "active_customers": "SELECT count(*) FROM customer_activity WHERE active",
    "alerts_fired": "SELECT count(*) FROM alerts WHERE status = 'fired'",
    "alerts_suppressed": "SELECT count(*) FROM alerts WHERE status <> 'fired'",
    "dead_letters": "SELECT count(*) FROM dead_letters",
}


def read_figures(con: duckdb.DuckDBPyConnection) -> Figures:
    missing: dict[str, str] = {}

    def q(name: str, sql: str) -> list[Any]:
        return _rows(con, sql, missing, name)

    counts = {}
    for table, sql in COUNTS.items():
        found = q(table, sql)
        counts[table] = int(found[0][0]) if found else 0
    # Order revenue as the shop reported it (after discounts), one value per completed order.
    order_rows = q(
        "orders",
        "SELECT count(*), coalesce(sum(revenue), 0) FROM "
        "(SELECT order_id, any_value(order_revenue) AS revenue "
        "FROM orders WHERE kind = 'completed' GROUP BY order_id)",
    )
    span = q("span", "SELECT min(event_time)::DATE::VARCHAR, max(event_time)::DATE::VARCHAR FROM events")
    return Figures(
        counts=counts,
        span=(span[0][0], span[0][1]) if span and span[0][0] else None,
        events_by_channel=q(
            "events_by_channel", "SELECT channel, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
        events_by_day=q(
            "events_by_day",
            per_day_sql("(SELECT (event_time AT TIME ZONE 'UTC')::DATE AS t FROM events)", "t"),
        ),
        orders=int(order_rows[0][0]) if order_rows else 0,
        revenue=float(order_rows[0][1]) if order_rows else 0.0,
        alerts_by_rule=q(
            "alerts_by_rule", "SELECT rule_id, status, count(*) FROM alerts GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        alerts_by_day=q(
            "alerts_by_day",
            per_day_sql(
                "(SELECT (time AT TIME ZONE 'UTC')::DATE AS t FROM alerts WHERE status = 'fired')", "t"
            ),
        ),
        funnel=q("funnel", "SELECT step, visitors FROM funnel_overall ORDER BY step_no"),
        funnel_by_campaign=q("funnel_by_campaign", "SELECT campaign, step, visitors FROM funnel_by_campaign"),
        rfm_segments=q("rfm", "SELECT segment, customers, revenue FROM rfm_segments ORDER BY revenue DESC"),
        value_tiers=q("value_tiers", "SELECT tier, customers, revenue, revenue_share FROM value_tiers"),
        retention=q("retention", "SELECT cohort_month, month_number, retention FROM cohort_retention"),
        top_campaigns=q(
            "campaigns",
            "SELECT campaign, sent, opened, clicked, orders, revenue FROM campaign_performance "
            "ORDER BY revenue DESC, sent DESC LIMIT 8",
        ),
        top_paths=q("top_paths", "SELECT path, visits FROM top_paths LIMIT 10"),
        dead_letters_by_reason=q(
            "dead_letters", "SELECT stage, reason, count(*) FROM dead_letters GROUP BY 1, 2 ORDER BY 3 DESC"
        ),
        unavailable=missing,
    )
