"""The report page: headline numbers, the data's span, one card per chart or table.

Cards sit in a two-column grid whose columns may shrink below their content's width
(``minmax(0, 1fr)``); charts scale to the card and tables wrap their cells, so nothing
sticks out of its card whatever the span or the names in the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from sinks.report import charts
from sinks.report.figures import Figures

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 12px;color:#1a202c}
h1{font-size:22px} h2{font-size:16px;margin:0 0 8px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
.card{border:1px solid #e2e8f0;border-radius:8px;padding:12px 14px;overflow:hidden;min-width:0}
.card svg{display:block;max-width:100%;height:auto}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0 18px}
.kpi{border:1px solid #e2e8f0;border-radius:8px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px}
table{border-collapse:collapse;font-size:13px;width:100%;table-layout:fixed}
td,th{padding:3px 6px;border-bottom:1px solid #edf2f7;text-align:left;overflow-wrap:anywhere}
.muted{color:#718096}
@media (max-width:700px){.grid{grid-template-columns:minmax(0,1fr)}}
"""


def kpi(label: str, value: str) -> str:
    return f'<div class="kpi"><span class="muted">{escape(label)}</span><b>{escape(value)}</b></div>'


def table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _span(fig: Figures) -> str:
    if fig.span is None:
        return "no events yet"
    first, last = fig.span
    days = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).days + 1
    return f"events from {first} to {last} ({days:,} days)"


def cards(fig: Figures) -> list[tuple[str, str]]:
    """(title, body) of every card, in page order."""
    tiers = [(f"{t} ({share:.0%})", rev) for t, _, rev, share in fig.value_tiers]
    alert_rules: dict[str, float] = {}
    for rule, status, n in fig.alerts_by_rule:
        if status == "fired":
            alert_rules[rule] = alert_rules.get(rule, 0) + n
    entered: dict[str, int] = {}
    for campaign, _, n in fig.funnel_by_campaign:
        entered.setdefault(campaign, n)  # the first step of each campaign's rows
    last_step = fig.funnel[-1][0] if fig.funnel else None
    reached = {c: n for c, s, n in fig.funnel_by_campaign if s == last_step}
    return [
        ("Events per day", charts.columns("events per day", [(d, float(n)) for d, n in fig.events_by_day])),
        (
            "Funnel, overall (visitor-days per step)",
            charts.hbar("funnel", [(s, float(n)) for s, n in fig.funnel]),
        ),
        (
            "Funnel by campaign",
            table(
                ["campaign", "entered", f"reached {last_step or 'last step'}", "conversion"],
                [
                    (c, n, reached.get(c, 0), f"{reached.get(c, 0) / n:.1%}" if n else "")
                    for c, n in list(entered.items())[:10]
                ],
            ),
        ),
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
            table(
                ["segment", "customers", "revenue EUR"],
                [*((s, n, f"{r:,.2f}") for s, n, r in fig.rfm_segments), _total_row(fig.rfm_segments)],
            ),
        ),
        (
            "Top campaigns",
            table(
                ["campaign", "sent", "opened", "clicked", "orders", "revenue EUR"],
                [(n, s, o, cl, od, f"{r:,.2f}") for n, s, o, cl, od, r in fig.top_campaigns],
            ),
        ),
    ]


def _total_row(rows: Sequence[tuple[str, int, float]]) -> tuple[str, int, str]:
    return ("total", sum(n for _, n, _ in rows), f"{sum(r for _, _, r in rows):,.2f}")


def render_html(fig: Figures, generated_at: datetime, title: str = "webhouse report", extra: str = "") -> str:
    """The whole page; ``extra`` is HTML appended after the cards (the demo's ground truth)."""
    c = fig.counts
    kpis = [
        ("events", f"{c['events']:,}"),
        ("sessions", f"{c['sessions']:,}"),
        ("customers", f"{c['customers']:,}"),
        ("active customers", f"{c.get('active_customers', 0):,}"),
        ("orders", f"{fig.orders:,}"),
        ("revenue", f"{fig.revenue:,.0f} EUR"),
        ("alerts fired", f"{c['alerts_fired']:,}"),
        ("dead letters", f"{c['dead_letters']:,}"),
    ]
    missing = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in fig.unavailable.items())
    grid = "".join(f'<div class="card"><h2>{escape(t)}</h2>{body}</div>' for t, body in cards(fig))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="muted">Generated {generated_at:%Y-%m-%d %H:%M} UTC from the webhouse tables (DuckDB);
{_span(fig)}.</p>
<div class="kpis">{"".join(kpi(k, v) for k, v in kpis)}</div>
<div class="grid">{grid}</div>
{extra}
{f"<h2>Not available</h2><ul>{missing}</ul>" if missing else ""}
</body></html>
"""


def write_html(fig: Figures, path: Path, title: str = "webhouse report", extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(fig, datetime.now(UTC), title, extra), encoding="utf-8")
    return path.resolve()
