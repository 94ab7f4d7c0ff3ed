"""`webhouse triggers validate | list | test | run`: try rules before turning them on.

``test`` replays a file of Segment events (JSON lines, as an SDK would send them)
through the collector's own mapping, a light stand-in for the processors (see
harness.RawReplay) and the real engine with its guardrails, then prints every alert
it would fire or suppress, with the conditions that held and their values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pipeline.collector.segment import CALL_TYPES
from pipeline.collector.semantic import SEMANTIC
from pipeline.errors import RuleError, ValidationError
from pipeline.settings import Settings
from triggers.alerts import Alert
from triggers.engine import Engine
from triggers.events import from_ms, to_ms
from triggers.harness import Harness, RawReplay
from triggers.ruleset import RuleSet, check_vocabulary, load_rules


def _rules(args: argparse.Namespace, settings: Settings) -> RuleSet:
    return load_rules(Path(args.rules) if args.rules else settings.triggers.rules_dir)


def known_events(settings: Settings) -> set[str]:
    """Event names rules may use: the spec events the collector types, call types, declared ones."""
    return {*SEMANTIC, *CALL_TYPES, *settings.triggers.event_names, *settings.worker.identity_events}


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    rules = _rules(args, settings)
    check_vocabulary(rules, settings.triggers.consent_purposes, known_events(settings))
    print(f"{len(rules.rules)} rules OK ({len(rules.enabled())} enabled)")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    rules = _rules(args, settings)
    print(f"{'rule':24} {'kind':9} {'trigger':32} {'consent':16} {'cooldown':>9} {'channel':9} source")
    for rule in rules.rules:
        trigger = rule.trigger.source + (f": {', '.join(rule.trigger.events)}" if rule.trigger.events else "")
        if rule.absence:
            trigger += f", then no {rule.absence.event}"
        cooldown = f"{rule.cooldown}s" if rule.cooldown else "-"
        state = "" if rule.enabled else " (disabled)"
        print(
            f"{rule.id:24} {rule.kind:9} {trigger[:32]:32} {rule.consent or '-':16} {cooldown:>9} "
            f"{rule.alert.channel:9} {rules.sources[rule.id]}{state}"
        )
    return 0


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


def replay(lines: TextIO, engine: Engine, gap_s: int, until: datetime | None, out: TextIO) -> list[Alert]:
    """Map, replay and finish; problems with single lines are reported and skipped."""
    from pipeline.collector.segment import map_event

    harness = Harness(engine)
    runner = RawReplay(harness, gap_s)
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
        runner.event(record)
    if until is None:  # let every window and visit run out: what would happen if nothing else came
        horizon_s = gap_s + engine.rules.history_window_s + engine.settings.absence_grace_s + 1
        end = (to_ms(last) or 0) + horizon_s * 1000
    else:
        end = to_ms(until) or 0
    runner.finish(end)
    for window in harness.pending():
        due = from_ms(window.deadline)
        print(f"PENDING    {window.rule_id}: fires at {due} unless {window.absent!r} happens", file=out)
    return harness.alerts


def _print(alert: Alert, out: TextIO) -> None:
    time = from_ms(alert.time)
    status = alert.status.upper() + (f" ({alert.suppression_reason})" if alert.suppression_reason else "")
    print(f"{status:28} {alert.rule_id:24} {alert.customer_id:20} {time:%Y-%m-%d %H:%M:%S}Z", file=out)
    print(f"    {alert.priority} via {alert.channel}: {alert.message}", file=out)
    for reason in alert.reasons:
        print(f"    because {reason.condition}: {json.dumps(reason.actual, default=str)}", file=out)


def _test(args: argparse.Namespace, settings: Settings) -> int:
    rules = _rules(args, settings)
    if args.rule:
        rules = rules.only(args.rule)
    engine = Engine(rules, settings.triggers)
    until = _when({"timestamp": args.until}, datetime.now(UTC)) if args.until else None
    path = Path(args.events)
    try:
        with path.open() as lines:
            alerts = replay(lines, engine, settings.worker.session.inactivity_gap_s, until, sys.stdout)
    except OSError as exc:
        raise RuleError(str(path), None, f"cannot read events: {exc}") from exc
    for alert in alerts:
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


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from triggers.standalone import run

    return run(settings)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("triggers", help="business-logic trigger rules: validate, list, test, run")
    commands = parser.add_subparsers(dest="triggers_command", required=True, metavar="ACTION")
    rules_help = "rules directory (default: settings triggers.rules_dir)"
    validate = commands.add_parser("validate", help="load every rule; report file:line of the first problem")
    validate.add_argument("--rules", help=rules_help)
    validate.set_defaults(func=_validate)
    listing = commands.add_parser("list", help="list the rules: trigger, consent, cooldown, channel, source")
    listing.add_argument("--rules", help=rules_help)
    listing.set_defaults(func=_list)
    test = commands.add_parser(
        "test",
        help="replay a JSON-lines file of Segment events; print the alerts fired and suppressed",
    )
    test.add_argument("events", help="file with one Segment event (JSON object) per line")
    test.add_argument("--rule", help="only this rule id (default: all)")
    test.add_argument("--rules", help=rules_help)
    test.add_argument(
        "--until",
        help="ISO time to run the clock to at the end (default: until every window has run out)",
    )
    test.add_argument("--json", action="store_true", help="print alerts as JSON lines")
    test.set_defaults(func=_test)
    run = commands.add_parser("run", help="run the trigger agents in their own faust worker")
    run.set_defaults(func=_run)
