"""`webhouse demo`: the README's first command."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.settings import Settings


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _webhouse_command() -> str:
    """This interpreter's `webhouse` script, relative to the working directory when inside it."""
    script = Path(sys.executable).parent / "webhouse"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from tools.demo.run import DemoOptions, run_demo  # the whole pipeline: not for every command

    sim = settings.simulate
    opts = DemoOptions(
        workdir=args.workdir,
        customers=args.customers or sim.customers * args.scale,
        days=args.days or sim.days,
        rate=args.rate if args.rate is not None else sim.rate * args.scale,
        seed=sim.seed if args.seed is None else args.seed,
        append=args.append,
    )
    # SIGTERM (a supervisor, `timeout`) unwinds like Ctrl-C, so the children are stopped too.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_demo(opts, settings)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"demo finished in {result.wall_s:.0f}s; report: {result.report_path}")
    print(f"query it: WEBHOUSE_WEBHOUSE__ROOT={result.tables_root} {_webhouse_command()} sql")
    print(f"(or put webhouse on the PATH first: source {Path(sys.executable).parent / 'activate'})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on simulated customers and write a report",
        description="Starts Kafka (the local broker unless one answers at kafka.bootstrap_servers), the "
        "collector, the worker, the trigger stages and the sink; replays simulated customers through the "
        "collector; waits until the webhouse holds it all; prints a summary and writes an offline HTML "
        "report. Ctrl-C stops everything cleanly.",
    )
    p.add_argument("--workdir", type=Path, default=Path(".webhouse/demo"), help="tables, logs, report")
    p.add_argument("--scale", type=int, default=1, help="multiply the default size and rate (bigger demo)")
    p.add_argument("--customers", type=int, default=None, help="simulated people")
    p.add_argument("--days", type=float, default=None, help="simulated period in days")
    p.add_argument("--rate", type=float, default=None, help="events per second sent to the collector")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--append",
        action="store_true",
        help="add to the previous run's topics and tables instead of starting fresh",
    )
    p.set_defaults(func=_demo)
