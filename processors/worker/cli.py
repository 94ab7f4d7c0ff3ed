"""`webhouse worker`: the stream processor (enrichment, identity stitching, sessions)."""

from __future__ import annotations

import argparse

from pipeline.settings import SessionPolicySettings, Settings
from processors.sessions.policy import SessionPolicy


def _help_text() -> str:
    policy = SessionPolicy.from_settings(SessionPolicySettings())
    return (
        "Reads the raw events topic; writes enriched events (user agent, referrer, UTM, URL, clock "
        "skew, geo, customer id, session id), closed sessions and identity links. Bots are enriched "
        "but not sessionized. Failures go to the dead-letter topic.\n\n"
        "Session policy (defaults; set with WEBHOUSE_WORKER__SESSION__* or [worker.session]):\n"
        + policy.describe()
        + "\n\nKeys: inactivity_gap_s, max_duration_s, allowed_lateness_s, split_at_midnight, "
        "midnight_timezone, split_on_campaign_change, idle_close_interval_s (quiet time after which a "
        "caught-up partition's clock follows the wall clock)."
    )


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from processors.worker.runner import run_worker

    return run_worker(settings)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "worker",
        help="run the stream worker: enrichment, identity stitching, event-time sessions",
        description=_help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=_worker)
