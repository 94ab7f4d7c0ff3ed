"""Tiny inline-SVG charts for the demo report: no JavaScript, no CDN, opens offline.

Each function takes plain rows and returns an ``<svg>`` string; values are escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096"]


def _fmt(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def empty(title: str, why: str = "no data yet") -> str:
    return (
        f'<svg class="chart" width="520" height="60" role="img" aria-label="{escape(title)}">'
        f'<text x="8" y="34" fill="#718096">{escape(why)}</text></svg>'
    )


def hbar(title: str, rows: Sequence[tuple[str, float]], width: int = 520, unit: str = "") -> str:
    """Horizontal bars, one per (label, value); used for funnels, tiers and rankings."""
    if not rows:
        return empty(title)
    bar_h, gap, label_w = 22, 6, 190
    height = len(rows) * (bar_h + gap) + 10
    top = max(v for _, v in rows) or 1.0
    parts = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    for i, (label, value) in enumerate(rows):
        y = 5 + i * (bar_h + gap)
        w = max(1.0, (width - label_w - 80) * value / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(label if len(label) <= 28 else label[:27] + '…')}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="12">{_fmt(value)}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def columns(title: str, rows: Sequence[tuple[str, float]], width: int = 640, height: int = 220) -> str:
    """Vertical bars over an ordered axis (e.g. alerts per day)."""
    if not rows:
        return empty(title)
    top = max(v for _, v in rows) or 1.0
    pad_l, pad_b = 40, 40
    slot = (width - pad_l - 10) / len(rows)
    parts = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    parts.append(f'<text x="4" y="14" font-size="11">{_fmt(top)}</text>')
    step = max(1, len(rows) // 10)
    for i, (label, value) in enumerate(rows):
        h = (height - pad_b - 20) * value / top
        x = pad_l + i * slot
        y = height - pad_b - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(1.0, slot - 2):.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
        )
        if i % step == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - pad_b + 14}" font-size="10" '
                f'transform="rotate(35 {x:.1f} {height - pad_b + 14})">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def heatmap(title: str, rows: Sequence[tuple[str, int, float]], width: int = 640) -> str:
    """Cohort retention: (cohort label, period index, share 0..1) cells."""
    if not rows:
        return empty(title)
    cohorts = sorted({c for c, _, _ in rows})
    periods = sorted({p for _, p, _ in rows})
    cell_w = min(44.0, (width - 90) / max(1, len(periods)))
    cell_h = 20
    height = 30 + cell_h * len(cohorts)
    values = {(c, p): v for c, p, v in rows}
    parts = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    for j, p in enumerate(periods):
        parts.append(f'<text x="{90 + j * cell_w + 4:.1f}" y="14" font-size="11">+{p}</text>')
    for i, c in enumerate(cohorts):
        y = 20 + i * cell_h
        parts.append(f'<text x="4" y="{y + 14}" font-size="11">{escape(c)}</text>')
        for j, p in enumerate(periods):
            if (c, p) not in values:
                continue
            v = max(0.0, min(1.0, values[(c, p)]))
            shade = int(245 - 180 * v)
            parts.append(
                f'<rect x="{90 + j * cell_w:.1f}" y="{y}" width="{cell_w - 1:.1f}" height="{cell_h - 1}" '
                f'fill="rgb({shade},{shade + 5 if shade < 250 else 250},255)"><title>{escape(c)} +{p}: '
                f"{v:.0%}</title></rect>"
                f'<text x="{90 + j * cell_w + 3:.1f}" y="{y + 14}" font-size="10">{v:.0%}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
