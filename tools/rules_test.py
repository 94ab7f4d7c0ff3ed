"""`webhouse triggers test`: try rules on a file of Segment events, through the deployed stages.

The file (JSON lines, as an SDK would send them) goes through the collector's own mapping, then
the worker and the trigger stages on the in-memory runtime (``tools.local_pipeline``): the same
sessions, stitching, clock and guardrails as a deployment. Every alert they would fire or suppress
is printed with the conditions that held and their values, then the windows still open. It lives
in tools/ because it runs processors/ and triggers/ together; ``triggers.cli`` has the other
``webhouse triggers`` commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pipeline.errors import RuleError, ValidationError
from pipeline.event_view import from_ms, to_ms
from pipeline.settings import Settings
from tools.local_pipeline import LocalPipeline
from triggers import cli as triggers_cli
from triggers.alerts import Alert
from triggers.ruleset import RuleSet


def _when(raw: dict[str, Any], fallback: datetime) -> datetime:
    for key in ("timestamp", "originalTimestamp", "receivedAt", "sentAt"):
        value = raw.get(key)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return fallback


def replay(lines: TextIO, settings: Settings, rules: RuleSet, until: datetime | None,
           out: TextIO) -> list[Alert]:  # fmt: skip
    """Map, replay and finish; problems with single lines are reported and skipped."""
    from pipeline.collector.segment import map_event

    local = LocalPipeline(settings, rules, max_batch=500)
    last = datetime(1970, 1, 1, tzinfo=UTC)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            received = _when(raw, last) if isinstance(raw, dict) else last
            record = map_event(raw, received_at=received, source="triggers-test")
        except (ValueError, ValidationError) as exc:
            print(f"line {number}: skipped: {exc}", file=out)
            continue
        last = max(last, received)
        local.raw(record)
    if until is None:  # let every window and visit run out: what would happen if nothing else came
        gap_s = settings.worker.session.inactivity_gap_s
        horizon_s = gap_s + rules.history_window_s + settings.triggers.absence_grace_s + 1
        end = (to_ms(last) or 0) + horizon_s * 1000
    else:
        end = to_ms(until) or 0
    local.finish(end)
    for window in local.pending():
        due = from_ms(window.deadline)
        print(f"PENDING    {window.rule_id}: fires at {due} unless {window.absent!r} happens", file=out)
    return local.alerts


def _print(alert: Alert, out: TextIO) -> None:
    time = from_ms(alert.time)
    status = alert.status.upper() + (f" ({alert.suppression_reason})" if alert.suppression_reason else "")
    print(f"{status:28} {alert.rule_id:24} {alert.customer_id:20} {time:%Y-%m-%d %H:%M:%S}Z", file=out)
    print(f"    {alert.priority} via {alert.channel}: {alert.message}", file=out)
    for reason in alert.reasons:
        print(f"    because {reason.condition}: {json.dumps(reason.actual, default=str)}", file=out)


def _test(args: argparse.Namespace, settings: Settings) -> int:
    rules = triggers_cli.rules_of(args, settings)
    if args.rule:
        rules = rules.only(args.rule)
    until = _when({"timestamp": args.until}, datetime.now(UTC)) if args.until else None
    logging.getLogger("triggers").setLevel(logging.WARNING)  # the stages' start-up notes: not the report
    path = Path(args.events)
    try:
        with path.open() as lines:
            alerts = replay(lines, settings, rules, until, sys.stdout)
    except OSError as exc:
        raise RuleError(str(path), None, f"cannot read events: {exc}") from exc
    for alert in sorted(alerts, key=lambda a: (a.time, a.customer_id, a.rule_id)):
        if args.json:
            print(json.dumps(alert.to_json(), sort_keys=True))
        else:
            _print(alert, sys.stdout)
    fired = sum(a.status == "fired" for a in alerts)
    reasons = Counter(a.suppression_reason for a in alerts if a.status == "suppressed")
    detail = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
    print(
        f"{fired} fired, {len(alerts) - fired} suppressed" + (f" ({detail})" if detail else ""),
        file=sys.stderr,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``webhouse triggers`` (``triggers.cli``) with its ``test`` action added."""
    commands = triggers_cli.register(sub)
    test = commands.add_parser(
        "test",
        help="replay a JSON-lines file of Segment events; print the alerts fired and suppressed",
    )
    test.add_argument("events", help="file with one Segment event (JSON object) per line")
    test.add_argument("--rule", help="only this rule id (default: all)")
    test.add_argument("--rules", help=triggers_cli.RULES_HELP)
    test.add_argument(
        "--until",
        help="ISO time to run the clock to at the end (default: until every window has run out)",
    )
    test.add_argument("--json", action="store_true", help="print alerts as JSON lines")
    test.set_defaults(func=_test)
