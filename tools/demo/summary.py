"""The demo's printed summary: what landed in the webhouse, next to the simulator's truth."""

from __future__ import annotations

from sinks.report import Figures
from tools.simulate.truth import GroundTruth


def format_summary(fig: Figures, truth: GroundTruth) -> str:
    c = fig.counts
    lines = [
        "",
        "== webhouse demo: what landed ==",
        f"events          {c['events']:>9,}   by channel: "
        + ", ".join(f"{ch} {n:,}" for ch, n in fig.events_by_channel),
        f"sessions        {c['sessions']:>9,}",
        f"customers       {c['customers']:>9,}   (identified; simulator signed up {len(truth.customers):,})",
        f"orders          {fig.orders:>9,}   revenue {fig.revenue:,.2f} EUR "
        f"(simulator: {len(truth.orders):,} orders, {truth.total_revenue:,.2f} EUR)",
        f"alerts          {c['alerts_fired']:>9,}   fired, {c['alerts_suppressed']:,} suppressed",
        f"dead letters    {c['dead_letters']:>9,}   "
        f"(simulator sent {sum(truth.malformed_by_kind.values())} malformed)",
    ]
    if fig.alerts_by_rule:
        lines.append("\nalerts by rule:")
        lines += [f"  {rule:28} {status:11} {n:>6,}" for rule, status, n in fig.alerts_by_rule]
    if fig.funnel:
        lines.append("\nfunnel (visitor-days reaching each step):")
        first = fig.funnel[0][1] or 1
        lines += [f"  {step:28} {n:>8,}  {n / first:6.1%}" for step, n in fig.funnel]
    if fig.rfm_segments:
        lines.append("\nRFM segments:")
        lines += [f"  {seg:28} {n:>6,} customers  {rev:>12,.2f} EUR" for seg, n, rev in fig.rfm_segments]
    if fig.value_tiers:
        lines.append("\nvalue tiers:")
        lines += [
            f"  {tier:28} {n:>6,} customers  {rev:>12,.2f} EUR  {share:6.1%} of revenue"
            for tier, n, rev, share in fig.value_tiers
        ]
    if fig.top_campaigns:
        lines.append("\ntop campaigns (sent > opened > clicked > orders, revenue):")
        lines += [
            f"  {name[:28]:28} {s:>5} > {o:>5} > {cl:>5} > {orders:>4}  {rev:>10,.2f} EUR"
            for name, s, o, cl, orders, rev in fig.top_campaigns
        ]
    if fig.dead_letters_by_reason:
        lines.append("\ndead letters by stage and reason:")
        lines += [f"  {stage:10} {reason:28} {n:>6,}" for stage, reason, n in fig.dead_letters_by_reason]
    if fig.unavailable:
        lines.append("\nnot available:")
        lines += [f"  {name}: {why}" for name, why in fig.unavailable.items()]
    return "\n".join(lines) + "\n"
