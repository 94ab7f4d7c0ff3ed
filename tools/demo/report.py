"""The demo's HTML report: one self-contained file with inline SVG charts (opens offline)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from tools.demo import charts
from tools.demo.figures import Figures
from tools.simulate.truth import GroundTruth

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1a202c}
h1{font-size:22px} h2{font-size:16px;margin:0 0 8px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.card{border:1px solid #e2e8f0;border-radius:8px;padding:12px 14px;overflow:hidden}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0 18px}
.kpi{border:1px solid #e2e8f0;border-radius:8px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px} table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #edf2f7;text-align:left} .muted{color:#718096}
"""


def _kpi(label: str, value: str) -> str:
    return f'<div class="kpi"><span class="muted">{escape(label)}</span><b>{escape(value)}</b></div>'


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(fig: Figures, truth: GroundTruth, generated_at: datetime) -> str:
    c = fig.counts
    kpis = [
        ("events", f"{c['events']:,}"),
        ("sessions", f"{c['sessions']:,}"),
        ("customers", f"{c['customers']:,}"),
        ("orders", f"{fig.orders:,}"),
        ("revenue", f"{fig.revenue:,.0f} EUR"),
        ("alerts fired", f"{c['alerts_fired']:,}"),
        ("dead letters", f"{c['dead_letters']:,}"),
    ]
    tiers = [(f"{t} ({share:.0%})", rev) for t, _, rev, share in fig.value_tiers]
    alert_rules: dict[str, float] = {}
    for rule, status, n in fig.alerts_by_rule:
        if status == "fired":
            alert_rules[rule] = alert_rules.get(rule, 0) + n
    cards = [
        ("Funnel (visitor-days per step)", charts.hbar("funnel", [(s, float(n)) for s, n in fig.funnel])),
        ("Revenue by value tier (share of revenue)", charts.hbar("tiers", tiers, unit=" EUR")),
        ("Cohort retention by first-order month", charts.heatmap("retention", fig.retention)),
        (
            "Alerts fired per day",
            charts.columns("alerts per day", [(d, float(n)) for d, n in fig.alerts_by_day]),
        ),
        (
            "Alerts fired by rule",
            charts.hbar("alerts by rule", sorted(alert_rules.items(), key=lambda kv: -kv[1])),
        ),
        (
            "Top paths (first five pages of a visit)",
            charts.hbar("paths", [(p, float(n)) for p, n in fig.top_paths]),
        ),
        (
            "RFM segments",
            _table(
                ["segment", "customers", "revenue EUR"], [(s, n, f"{r:,.2f}") for s, n, r in fig.rfm_segments]
            ),
        ),
        (
            "Top campaigns",
            _table(
                ["campaign", "sent", "opened", "clicked", "orders", "revenue EUR"],
                [(n, s, o, cl, od, f"{r:,.2f}") for n, s, o, cl, od, r in fig.top_campaigns],
            ),
        ),
    ]
    truth_rows = [
        ("orders", len(truth.orders), fig.orders),
        ("revenue EUR", f"{truth.total_revenue:,.2f}", f"{fig.revenue:,.2f}"),
        ("signed-up customers", len(truth.customers), c["customers"]),
        ("malformed events / dead letters", sum(truth.malformed_by_kind.values()), c["dead_letters"]),
    ]
    missing = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in fig.unavailable.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webhouse demo report</title><style>{STYLE}</style></head>
<body>
<h1>webhouse demo report</h1>
<p class="muted">Generated {generated_at:%Y-%m-%d %H:%M} UTC from the webhouse tables (DuckDB); simulator seed
{truth.seed}, {truth.customers_simulated:,} simulated people.</p>
<div class="kpis">{"".join(_kpi(k, v) for k, v in kpis)}</div>
<div class="grid">{"".join(f'<div class="card"><h2>{escape(t)}</h2>{body}</div>' for t, body in cards)}</div>
<h2 style="margin-top:18px">Webhouse against the simulator's ground truth</h2>
{_table(["figure", "simulator", "webhouse"], truth_rows)}
{f"<h2>Not available</h2><ul>{missing}</ul>" if missing else ""}
</body></html>
"""


def write_report(fig: Figures, truth: GroundTruth, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(fig, truth, datetime.now(UTC)), encoding="utf-8")
    return path.resolve()
