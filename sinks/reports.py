"""`webhouse report <name>`: the analyses as printed sections, parameters passed to their macros."""

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


def sections(
    name: str, params: dict[str, str], con: duckdb.DuckDBPyConnection, cfg: WebhouseSettings
) -> list[Section]:
    """The queries a report prints; ``params`` come from ``--param key=value``."""
    limit = int(params.get("limit", "50"))
    if name == "funnel":
        if "steps" in params:
            con.execute(funnel_sql([s.strip() for s in params["steps"].split(",")], name="funnel_custom"))
            return [Section("funnel (custom steps)", f"SELECT * FROM funnel_custom LIMIT {limit}")]
        return [Section("funnel", f"SELECT * FROM funnel LIMIT {limit}")]
    if name == "rfm":
        return [
            Section("RFM segments", "SELECT * FROM rfm_segments"),
            Section(
                "RFM score grid (customers per R and F score)",
                "PIVOT (SELECT r_score, f_score FROM rfm) ON f_score USING count(*) ORDER BY r_score DESC",
            ),
        ]
    if name == "value_tiers":
        return [Section("value tiers", "SELECT * FROM value_tiers")]
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
            Section("top paths", f"SELECT * FROM top_paths LIMIT {limit}"),
            Section("next-page transitions", f"SELECT * FROM page_transitions LIMIT {limit}"),
        ]
    if name == "campaign_performance":
        days = int(params.get("days", "0") or 0)
        if days:
            return [Section("campaigns", "SELECT * FROM campaign_performance_within(?)", (days,))]
        return [Section("campaigns", "SELECT * FROM campaign_performance")]
    if name == "dormant_customers":
        if "days" not in params and "as_of" not in params:
            return [Section("dormant", "SELECT * FROM dormant_customers LIMIT ?", (limit,))]
        q = "SELECT * FROM dormant_customers_for(days := ?, as_of := ?) LIMIT ?"
        return [
            Section("dormant", q, (int(params.get("days", cfg.dormant_days)), params.get("as_of"), limit))
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
