"""The single `webhouse` command. Each stage registers its own subcommands.

A module in COMMAND_MODULES exposes ``register(subparsers)``, adding parsers whose
``func(args, settings) -> int`` runs the command. Settings are loaded once, here.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import sys
from collections.abc import Sequence

from pipeline.errors import WebhouseError
from pipeline.settings import describe_defaults, load_settings

COMMAND_MODULES = [
    "tools.demo.cli",
    "tools.chaos.cli",
    "pipeline.init_cli",
    "pipeline.kafka_cli",
    "pipeline.collector.cli",
    "pipeline.collector.email_cli",
    "processors.worker.cli",
    "sinks.cli",
    "tools.simulate.cli",
    "tools.uci_cli",
    "tools.import_cli",
    "tools.rules_test",  # webhouse triggers: triggers.cli, plus test
]


def _config_command(args: argparse.Namespace, settings: object) -> int:
    for key, env, default, doc in describe_defaults():
        print(f"{key:45} {env:55} {default!s:30} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhouse",
        description="Clickstream and customer-event pipeline for eCRM. Settings come from WEBHOUSE_* "
        "environment variables and an optional TOML file named by WEBHOUSE_CONFIG "
        "(`webhouse config` lists every key and default).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = sub.add_parser("config", help="list every setting, its env variable and default")
    config.set_defaults(func=_config_command)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def enable_crash_traces() -> None:
    """A process that dies of a signal (a SIGSEGV in a native library: a sink died so once in CI,
    with nothing in its log) prints every thread's Python stack to stderr, which is its log.
    Left as it is where already on (pytest turns it on for its own process)."""
    if not faulthandler.is_enabled():
        faulthandler.enable(all_threads=True)


def main(argv: Sequence[str] | None = None) -> int:
    enable_crash_traces()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        code: int = args.func(args, settings)
        return code
    except WebhouseError as exc:
        print(f"webhouse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
