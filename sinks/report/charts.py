"""Tiny inline-SVG charts for the HTML report: no JavaScript, no CDN, opens offline.

Each function takes plain rows and returns an ``<svg>`` string; values are escaped. Every chart
draws in its own coordinate system (``viewBox``) and scales to the width of its card, so it fits
at any span: a year of days is as wide as a week, only thinner bars. Labels stay inside the
drawing (long ones are cut with an ellipsis, the full text is in the tooltip).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096"]
WIDTH = 520  # drawing units; the card decides the pixels
CHAR_W = 0.62  # average glyph width per unit of font size (system sans-serif)


def _fmt(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _fit(label: str, room: float, size: float) -> str:
    """``label`` cut to what ``room`` units hold at font ``size``."""
    most = max(1, int(room / (size * CHAR_W)))
    return label if len(label) <= most else label[: most - 1] + "…"


def _open(title: str, height: float) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(title)}">'
    )


def empty(title: str, why: str = "no data yet") -> str:
    return f'{_open(title, 40)}<text x="8" y="24" fill="#718096">{escape(why)}</text></svg>'


def hbar(title: str, rows: Sequence[tuple[str, float]], unit: str = "") -> str:
    """Horizontal bars, one per (label, value); used for funnels, tiers and rankings."""
    if not rows:
        return empty(title)
    bar_h, gap, label_w, value_w, size = 22, 6, 170, 90, 12
    height = len(rows) * (bar_h + gap) + 10
    top = max(v for _, v in rows) or 1.0
    parts = [_open(title, height)]
    for i, (label, value) in enumerate(rows):
        y = 5 + i * (bar_h + gap)
        w = max(1.0, (WIDTH - label_w - value_w) * max(0.0, value) / top)
        shown = _fmt(value) + unit
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="{size}">'
            f"{escape(_fit(label, label_w - 8, size))}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{escape(label)}: {escape(shown)}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="{size}">'
            f"{escape(_fit(shown, value_w - 6, size))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def columns(title: str, rows: Sequence[tuple[str, float]], height: int = 200) -> str:
    """Vertical bars over an ordered axis, one per row (a time axis: pass every day, zeros too)."""
    if not rows:
        return empty(title)
    top = max(v for _, v in rows) or 1.0
    pad_l, pad_r, pad_t, pad_b, size = 36, 6, 16, 22, 10
    slot = (WIDTH - pad_l - pad_r) / len(rows)
    base = height - pad_b
    parts = [_open(title, height)]
    parts.append(f'<text x="2" y="{pad_t - 4}" font-size="{size}">{_fmt(top)}</text>')
    parts.append(
        f'<line x1="{pad_l}" y1="{base}" x2="{WIDTH - pad_r}" y2="{base}" stroke="#cbd5e0" stroke-width="1"/>'
    )
    for i, (label, value) in enumerate(rows):
        h = (base - pad_t) * max(0.0, value) / top
        x = pad_l + i * slot
        parts.append(
            f'<rect x="{x:.2f}" y="{base - h:.2f}" width="{max(0.5, slot * 0.85):.2f}" height="{h:.2f}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {_fmt(value)}</title></rect>'
        )
    # At most six axis labels: the first and the last always, anchored so they stay inside.
    ticks = sorted({round(k * (len(rows) - 1) / 5) for k in range(6)}) if len(rows) > 1 else [0]
    for i in ticks:
        x = pad_l + (i + 0.5) * slot
        anchor = "start" if i == 0 else "end" if i == len(rows) - 1 else "middle"
        x = pad_l if anchor == "start" else WIDTH - pad_r if anchor == "end" else x
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" font-size="{size}" text-anchor="{anchor}">'
            f"{escape(rows[i][0])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def heatmap(title: str, rows: Sequence[tuple[str, int, float]]) -> str:
    """Cohort retention: (cohort label, period index, share 0..1) cells; every period from 0 to
    the last is a column, so a month nobody came back in is an empty column, not a missing one."""
    if not rows:
        return empty(title)
    cohorts = sorted({c for c, _, _ in rows})
    periods = list(range(0, max(p for _, p, _ in rows) + 1))
    label_w = 60
    cell_w = (WIDTH - label_w) / max(1, len(periods))
    cell_h = 18
    size = min(10.0, cell_w / 2.6)
    height = 22 + cell_h * len(cohorts)
    values = {(c, p): v for c, p, v in rows}
    parts = [_open(title, height)]
    for j, p in enumerate(periods):
        parts.append(
            f'<text x="{label_w + j * cell_w + 2:.1f}" y="14" font-size="{size:.1f}">'
            f"{escape(_fit(f'+{p}', cell_w - 2, size))}</text>"
        )
    for i, c in enumerate(cohorts):
        y = 20 + i * cell_h
        parts.append(f'<text x="2" y="{y + 13}" font-size="10">{escape(_fit(c, label_w - 4, 10))}</text>')
        for j, p in enumerate(periods):
            if (c, p) not in values:
                continue
            v = max(0.0, min(1.0, values[(c, p)]))
            shade = int(245 - 180 * v)
            parts.append(
                f'<rect x="{label_w + j * cell_w:.1f}" y="{y}" width="{max(0.5, cell_w - 1):.1f}" '
                f'height="{cell_h - 1}" fill="rgb({shade},{min(250, shade + 5)},255)">'
                f"<title>{escape(c)} +{p}: {v:.0%}</title></rect>"
            )
            if cell_w >= 22:
                parts.append(
                    f'<text x="{label_w + j * cell_w + 2:.1f}" y="{y + 13}" font-size="{size:.1f}">'
                    f"{escape(_fit(f'{v:.0%}', cell_w - 2, size))}</text>"
                )
    parts.append("</svg>")
    return "".join(parts)
