"""`webhouse report <name>`: the analyses as printed sections, parameters passed to their macros.

A section may end with a totals row: the additive columns summed, the label column saying
'total', every other column (averages, ranks) left empty rather than summed wrongly. The date
range (``--since``/``--until``) is applied to the tables before (``sinks.window``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipeline.errors import SettingsError
from pipeline.settings import WebhouseSettings
from sinks.analyses import funnel_sql


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    query: str
    params: tuple[object, ...] = ()
    total_label: str | None = None  # the column that says 'total' in the totals row
    total_sums: tuple[str, ...] = ()  # the columns the totals row sums

    def sql(self) -> str:
        """The query, with its totals row when it has one."""
        if self.total_label is None:
            return self.query
        # A fold of +, not sum(): sum() widens BIGINT to HUGEINT (int128), and the whole column
        # then printed as int128; the fold keeps each column's own type.
        sums = ", ".join(f"list_reduce(list({c}), lambda a, b: a + b) AS {c}" for c in self.total_sums)
        return (
            f"WITH q AS ({self.query}) SELECT * FROM q UNION ALL BY NAME "
            f"SELECT 'total' AS {self.total_label}, {sums} FROM q"
        )


def sections(
    name: str, params: dict[str, str], con: duckdb.DuckDBPyConnection, cfg: WebhouseSettings
) -> list[Section]:
    """The queries a report prints; ``params`` come from ``--param key=value``."""
    limit = int(params.get("limit", "50"))
    if name == "funnel":
        view = "funnel"
        if "steps" in params:
            view = "funnel_custom"
            con.execute(funnel_sql([s.strip() for s in params["steps"].split(",")], name=view))
        return [
            Section("funnel, overall (visitor-days reaching each step)", f"SELECT * FROM {view}_overall"),
            Section("funnel by campaign", f"SELECT * FROM {view}_by_campaign LIMIT {limit}"),
        ]
    if name == "rfm":
        return [
            Section(
                "RFM segments",
                "SELECT * FROM rfm_segments",
                total_label="segment",
                total_sums=("customers", "share", "revenue", "revenue_share"),
            ),
            Section(
                "RFM score grid (customers per R and F score)",
                "PIVOT (SELECT r_score, f_score FROM rfm) ON f_score USING count(*) ORDER BY r_score DESC",
            ),
        ]
    if name == "value_tiers":
        return [
            Section(
                "value tiers",
                "SELECT * FROM value_tiers",
                total_label="tier",
                total_sums=("customers", "customer_share", "revenue", "revenue_share"),
            )
        ]
    if name == "cohort_retention":
        return [
            Section(
                "cohort retention (share of cohort ordering in month N)",
                "PIVOT (SELECT cohort_month, cohort_size, 'm' || lpad(month_number::VARCHAR, 2, '0') AS m, "
                "retention FROM cohort_retention) "
                "ON m USING first(retention) ORDER BY cohort_month",
            )
        ]
    if name == "top_paths":
        return [
            Section(
                "top paths",
                f"SELECT * FROM top_paths LIMIT {limit}",
                total_label="path",
                total_sums=("visits", "share"),
            ),
            Section("next-page transitions", f"SELECT * FROM page_transitions LIMIT {limit}"),
        ]
    if name == "campaign_performance":
        days = int(params.get("days", "0") or 0)
        sums = ("sent", "opened", "clicked", "visited", "orders", "revenue")
        if days:
            return [
                Section(
                    "campaigns",
                    "SELECT * FROM campaign_performance_within(?)",
                    (days,),
                    total_label="campaign",
                    total_sums=sums,
                )
            ]
        return [
            Section(
                "campaigns", "SELECT * FROM campaign_performance", total_label="campaign", total_sums=sums
            )
        ]
    if name == "dormant_customers":
        days, as_of = int(params.get("days", cfg.dormant_days)), params.get("as_of")
        everyone = "SELECT * FROM customer_activity_at(days := ?, as_of := ?)"
        return [
            Section(
                "active and dormant customers",
                f"SELECT CASE WHEN active THEN 'active' ELSE 'dormant' END AS status, count(*) AS customers, "
                f"sum(orders) AS orders, round(sum(revenue), 2) AS revenue FROM ({everyone}) GROUP BY ALL "
                f"ORDER BY status",
                (days, as_of),
                total_label="status",
                total_sums=("customers", "orders", "revenue"),
            ),
            Section(
                "dormant customers, most valuable first",
                "SELECT * FROM dormant_customers_for(days := ?, as_of := ?) LIMIT ?",
                (days, as_of, limit),
            ),
        ]
    if name == "realtime":
        now = params.get("now")
        return [
            Section("active visitors", "SELECT * FROM realtime_visitors_at(now := ?)", (now,)),
            Section("top pages (30 min)", "SELECT * FROM realtime_pages_at(now := ?)", (now,)),
            Section("top products (30 min)", "SELECT * FROM realtime_products_at(now := ?)", (now,)),
        ]
    if name == "customer":
        cid = params.get("customer_id")
        if not cid:
            raise SettingsError("report customer needs --param customer_id=<id>")
        out = []
        installed = {r[0] for r in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
        if "customer_profile" in installed:
            out.append(Section("profile", "SELECT * FROM customer_profile(?)", (cid,)))
        out += [
            Section("identities", "SELECT * FROM customer_identities(?)", (cid,)),
            Section("consent", "SELECT * FROM customer_consent(?)", (cid,)),
            Section("recent events", "SELECT * FROM customer_events(?)", (cid,)),
            Section("sessions", "SELECT * FROM customer_sessions(?)", (cid,)),
            Section("order lines", "SELECT * FROM customer_order_lines(?)", (cid,)),
        ]
        if "customer_alerts" in installed:
            out.append(Section("alerts", "SELECT * FROM customer_alerts(?)", (cid,)))
        return out
    raise SettingsError(f"unknown report {name!r}; one of: {', '.join(REPORTS)}")


REPORTS = (
    "funnel",
    "rfm",
    "value_tiers",
    "cohort_retention",
    "top_paths",
    "campaign_performance",
    "dormant_customers",
    "realtime",
    "customer",
)
