"""`webhouse simulate`: generate a run, write its ground truth, send it to the collector.

Size: ``--customers`` (people), optionally capped by ``--events``; or ``--duration`` with
``--rate`` (events = rate x duration). Time: ``--days`` of behaviour ending at ``--now``
(default: the wall clock at start, so the month replayed is the month that just passed),
sent at ``--rate`` events per second. Defaults come from the ``simulate`` settings section.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import SimulationError
from pipeline.settings import Settings
from tools.simulate.config import SimulationConfig
from tools.simulate.generate import Simulation, generate
from tools.simulate.sender import SendPolicy, SendReport, send_events

EVENTS_PER_CUSTOMER = 36  # measured average of the default mix over 30 days; sizes --duration runs


def _now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SimulationError(f"--now {value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def build_config(args: argparse.Namespace, settings: Settings) -> SimulationConfig:
    """Size: --customers and/or --events; or, with only --duration and --rate, rate x duration events."""
    s = settings.simulate
    customers, max_events = args.customers, args.events
    if max_events is None and customers is None and args.duration is not None and args.rate:
        max_events = int(args.rate * args.duration)
    if customers is None:
        # Enough people to reach the event cap (whole customers only); else the configured size.
        customers = int(max_events / EVENTS_PER_CUSTOMER * 1.5) + 1 if max_events else s.customers
    return SimulationConfig(
        seed=s.seed if args.seed is None else args.seed,
        now=_now(args.now),
        days=args.days or s.days,
        customers=customers,
        max_events=max_events,
        bots=s.bots if args.bots is None else args.bots,
        malformed=s.malformed if args.malformed is None else args.malformed,
        vip_revenue=s.vip_revenue,
        # The ground truth judges tiers and cross-sell by the same tables the triggers use.
        value_tiers=tuple((t.name, t.min_revenue, t.min_orders) for t in settings.triggers.value_tiers),
        cross_sell={k: tuple(v) for k, v in settings.triggers.cross_sell.items()},
    )


def build_policy(args: argparse.Namespace, settings: Settings, events: int) -> SendPolicy:
    """Pace: --rate; or, with --duration alone, whatever spreads the events over the duration."""
    s = settings.simulate
    url = args.url or s.collector_url or f"http://{settings.collector.host}:{settings.collector.port}"
    rate = s.rate if args.rate is None else args.rate
    if args.duration is not None and args.rate is None:
        if args.duration <= 0:
            raise SimulationError("--duration must be positive")
        rate = events / args.duration
    return SendPolicy(
        url=url,
        write_key=args.write_key or s.write_key,
        rate=rate,
        batch_size=args.batch_size or s.batch_size,
        concurrency=args.concurrency or s.concurrency,
        timeout_s=s.request_timeout_s,
        max_retries=s.max_retries,
        gzip=args.gzip,
        sent_at=not args.no_sent_at,
    )


def _summary(sim: Simulation, seconds: float) -> str:
    t = sim.truth
    carts = sum(1 for c in t.abandoned_carts if c.satisfies_rule)
    return (
        f"generated {len(sim.events)} events in {seconds:.2f}s ({len(sim.events) / seconds:,.0f}/s): "
        f"{t.customers_simulated} people ({len(t.customers)} signed up), {len(t.orders)} orders, "
        f"revenue {t.total_revenue:,.2f} EUR, {len(t.vip)} VIPs with "
        f"{t.vip_revenue_cents / max(1, t.total_revenue_cents):.0%} of revenue, {carts} abandoned carts, "
        f"{len(t.browse_abandonments)} browse abandonments, {len(t.marketing_withdrawn)} marketing opt-outs, "
        f"{len(t.campaigns)} campaigns, {len(t.bots)} crawls, {sum(t.malformed_by_kind.values())} malformed"
    )


def _progress_printer() -> Any:
    last = [0.0]

    def show(sent: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2.0 or sent == total:
            last[0] = now
            print(f"  sent {sent}/{total} events ({sent / max(1, total):.0%})", file=sys.stderr, flush=True)

    return show


def _command(args: argparse.Namespace, settings: Settings) -> int:
    config = build_config(args, settings)
    began = time.perf_counter()
    sim = generate(config)
    print(_summary(sim, time.perf_counter() - began))
    truth_path = args.truth or settings.simulate.truth_path
    sim.truth.write(truth_path)
    print(f"ground truth: {truth_path}")
    if args.dump_events is not None:
        args.dump_events.parent.mkdir(parents=True, exist_ok=True)
        with args.dump_events.open("w", encoding="utf-8") as out:
            out.writelines(sim.jsonl())
        print(f"events: {args.dump_events}")
    if args.dry_run:
        return 0
    policy = build_policy(args, settings, len(sim.events))
    pace = f"{policy.rate:,.0f} events/s" if policy.rate else "unpaced"
    print(f"sending to {policy.url} ({pace}, batches of {policy.batch_size}, {policy.concurrency} in flight)")
    report = asyncio.run(send_events(sim.events, policy, _progress_printer()))
    print(_report(report))
    return 0


def _report(r: SendReport) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
    return (
        f"sent {r.events} events in {r.elapsed_s:.1f}s ({r.rate:,.0f}/s) in {r.requests} requests "
        f"[{statuses}]; collector accepted {r.accepted}, refused {r.refused}; "
        f"{r.retries} retries, {r.rejected_batches} batches rejected"
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="send believable synthetic customer traffic to the collector, with its ground truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, help="random seed (same seed, same stream)")
    p.add_argument("--customers", type=int, help="simulated people")
    p.add_argument("--events", type=int, help="stop adding customers at this many events")
    p.add_argument("--days", type=float, help="simulated days of behaviour")
    p.add_argument("--now", help="end of the simulated period, ISO-8601 (default: now)")
    p.add_argument("--rate", type=float, help="events per second (0: unpaced)")
    p.add_argument("--duration", type=float, help="seconds the sending should take (sets size or rate)")
    p.add_argument("--bots", type=int, help="crawler visits")
    p.add_argument("--malformed", type=int, help="deliberately broken events")
    p.add_argument("--url", help="collector base URL")
    p.add_argument("--write-key", help="write key (Basic auth user)")
    p.add_argument("--batch-size", type=int, help="events per request")
    p.add_argument("--concurrency", type=int, help="requests in flight")
    p.add_argument("--gzip", action="store_true", help="gzip request bodies")
    p.add_argument(
        "--no-sent-at",
        action="store_true",
        help="do not stamp sentAt: event time is then the timestamp exactly, no skew correction",
    )
    p.add_argument("--truth", type=Path, help="ground-truth JSON path")
    p.add_argument("--dump-events", type=Path, help="also write the stream as JSON lines")
    p.add_argument("--dry-run", action="store_true", help="generate and write files, send nothing")
    p.set_defaults(func=_command)
