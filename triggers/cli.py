"""`webhouse triggers validate | list | run`: check rules before turning them on, run the stages.

``webhouse triggers test`` (replay a file of Segment events through the worker and these stages)
is added to the same command by ``tools.rules_test``: it needs processors/ as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.collector.segment import CALL_TYPES
from pipeline.collector.semantic import SEMANTIC
from pipeline.settings import Settings
from triggers.ruleset import RuleSet, check_vocabulary, load_rules

RULES_HELP = "rules directory (default: settings triggers.rules_dir)"


def rules_of(args: argparse.Namespace, settings: Settings) -> RuleSet:
    """The rules of ``--rules DIR``, else of ``triggers.rules_dir``."""
    return load_rules(Path(args.rules) if args.rules else settings.triggers.rules_dir)


def known_events(settings: Settings) -> set[str]:
    """Event names rules may use: the spec events the collector types, call types, declared ones."""
    return {*SEMANTIC, *CALL_TYPES, *settings.triggers.event_names, *settings.worker.identity_events}


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    rules = rules_of(args, settings)
    check_vocabulary(rules, settings.triggers.consent_purposes, known_events(settings))
    print(f"{len(rules.rules)} rules OK ({len(rules.enabled())} enabled)")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    rules = rules_of(args, settings)
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


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from triggers.standalone import run

    return run(settings)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add ``webhouse triggers``; returns its actions, for ``tools.rules_test`` to add ``test``."""
    parser = sub.add_parser("triggers", help="business-logic trigger rules: validate, list, test, run")
    commands = parser.add_subparsers(dest="triggers_command", required=True, metavar="ACTION")
    rules_help = RULES_HELP
    validate = commands.add_parser("validate", help="load every rule; report file:line of the first problem")
    validate.add_argument("--rules", help=rules_help)
    validate.set_defaults(func=_validate)
    listing = commands.add_parser("list", help="list the rules: trigger, consent, cooldown, channel, source")
    listing.add_argument("--rules", help=rules_help)
    listing.set_defaults(func=_list)
    run = commands.add_parser("run", help="run the trigger stages in a process of their own")
    run.set_defaults(func=_run)
    return commands
