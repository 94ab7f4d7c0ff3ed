"""`webhouse chaos`: kill the stack's processes at seeded moments; prove nothing was lost."""

from __future__ import annotations

import argparse
import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.settings import Settings


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the stacks' teardown: children and brokers stopped


def _instant(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def _summary(report: dict[str, Any]) -> str:
    kills = ", ".join(f"{k} {n}" for k, n in report["kills"].items() if n) or "none"
    lines = [
        f"faults: {kills}; exits the supervisor restarted: {report['unexpected_exits'] or 'none'}; "
        f"copies on the raw topic from client retries: {report['raw_copies']}",
        f"acknowledged {report['acknowledged']:,}, lost {report['lost']}, duplicated {report['duplicated']} "
        f"(by table: {report['duplicated_by_table'] or 'none'})",
        f"tables differing from the undisturbed run: {', '.join(report['tables_differing']) or 'none'}",
        f"rebalances seen under chaos: {report['rebalances']} (undisturbed: {report['rebalances_baseline']}; "
        f"by stage: {report['rebalances_by_stage'] or 'none'})",
    ]
    for table, d in report["table_diffs"].items():
        lines.append(
            f"  {table}: {d['baseline_rows']:,} rows undisturbed, {d['chaos_rows']:,} under chaos; "
            f"{d['only_baseline']:,} only undisturbed, {d['only_chaos']:,} only under chaos"
        )
    lines.append(f"against the ground truth: undisturbed {report['truth']['baseline']}")
    lines.append(f"                          under chaos {report['truth']['chaos']}")
    for run, why in report["unsettled"].items():
        lines.append(f"the {run} run did not settle (its tables are compared as they were): {why[:300]}")
    for error in report["fault_errors"]:
        lines.append(f"a fault could not be carried out: {error}")
    if report["kills_not_done"]:
        lines.append(f"{report['kills_not_done']} planned fault(s) never came: it proves less than asked")
    failed = (
        "FAILED: the spec is 0 lost, 0 duplicated, no table differing, every run settled, every fault done"
    )
    lines.append("PASSED" if report["passed"] else failed)
    return "\n".join(lines)


def _chaos(args: argparse.Namespace, settings: Settings) -> int:
    from tools.chaos.run import ChaosOptions, run_chaos  # the whole pipeline: not for every command

    opts = ChaosOptions(
        workdir=args.workdir.resolve(),
        kills=args.kills,
        seed=args.seed,
        customers=args.customers,
        days=args.days,
        rate=args.rate,
        dedupe=not args.no_dedupe,
        max_pause_s=args.max_pause,
        separate_triggers=args.separate_triggers,
        now=args.now,
        brokers=args.brokers,
        workers=args.workers,
        sinks=args.sinks,
    )
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        report = run_chaos(opts, settings).to_json()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(_summary(report), flush=True)
    if args.json:
        print(json.dumps(report, sort_keys=True, default=str))
    return 0 if report["passed"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "chaos",
        help="run the whole stack twice, undisturbed and under seeded kills; compare every table",
        description="Sends the simulator's traffic through the whole stack (collector, worker, triggers, "
        "sink, each on its own local broker) twice: undisturbed, then while SIGKILLing the services and "
        "pausing (SIGSTOP) or killing the broker at seeded moments; a supervisor restarts what died, the "
        "client retries unacknowledged batches. Then compares every table of the two runs, and with the "
        "ground truth. Exit 0 only for 0 lost, 0 duplicated and no table differing. With --brokers, "
        "--workers, --sinks the stack is scaled out (a local cluster, processes sharing consumer "
        "groups) and the report counts the rebalances the services saw.",
    )
    p.add_argument("--kills", type=int, default=10, help="faults to inject (kill points)")
    p.add_argument("--seed", type=int, default=1, help="seeds the traffic and the fault schedule")
    p.add_argument("--customers", type=int, default=60, help="simulated people")
    p.add_argument("--days", type=float, default=10.0, help="simulated period in days")
    p.add_argument("--rate", type=float, default=150.0, help="events per second sent to the collector")
    p.add_argument("--max-pause", type=float, default=8.0, help="longest broker pause (SIGSTOP), seconds")
    p.add_argument(
        "--no-dedupe",
        action="store_true",
        help="run the sink without id-deduplication: offsets and transactions alone must land each "
        "record once",
    )
    p.add_argument(
        "--separate-triggers",
        action="store_true",
        help="run the triggers as a process of their own (`webhouse triggers run`) and kill it too; "
        "default: in the worker's App, as the demo runs them",
    )
    p.add_argument(
        "--now",
        type=_instant,
        default=None,
        help="the simulated 'now' (ISO 8601, UTC); with --seed it fixes the traffic, so a report's "
        "seed and now replay it (default: the wall clock)",
    )
    p.add_argument(
        "--brokers",
        type=_count,
        default=1,
        help="Kafka nodes: more than 1 runs a local cluster (3: "
        "replication factor 3, min.insync.replicas 2); a broker fault hits one node",
    )
    p.add_argument("--workers", type=_count, default=1, help="worker processes in one consumer group")
    p.add_argument("--sinks", type=_count, default=1, help="sink processes in one consumer group")
    p.add_argument("--workdir", type=Path, default=Path(".webhouse/chaos"), help="brokers, tables, logs")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object, last")
    p.set_defaults(func=_chaos)
