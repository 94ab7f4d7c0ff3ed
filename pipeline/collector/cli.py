"""``webhouse collector``: serve the Segment-compatible HTTP API until SIGTERM or SIGINT.

A stop finishes open requests and flushes the producer, each within
``collector.shutdown_timeout_s``; past ``health.stop_within_s`` (a broker that does not
answer) the process exits anyway (``pipeline.health.arm_stop_deadline``): what it had not
acknowledged, its clients send again."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable

from prometheus_client import REGISTRY

from pipeline.collector.processes import run_processes
from pipeline.collector.server import CollectorServer
from pipeline.health import arm_stop_deadline
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "collector",
        help="serve the Segment-compatible HTTP collector (/v1/batch, /v1/track, ..., /health, /metrics)",
    )
    parser.add_argument("--host", help="bind address (default: collector.host)")
    parser.add_argument("--port", type=int, help="port, 0 for any free one (default: collector.port)")
    parser.add_argument(
        "--processes",
        type=_at_least_one,
        help="processes serving the port together, one core each at most (default: collector.processes)",
    )
    parser.set_defaults(func=run)


def _at_least_one(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"at least 1 process, not {count}")
    return count


def run(args: argparse.Namespace, settings: Settings) -> int:
    pairs = (("host", args.host), ("port", args.port), ("processes", args.processes))
    overrides = {k: v for k, v in pairs if v is not None}
    if overrides:
        collector = settings.collector.model_copy(update=overrides)
        settings = settings.model_copy(update={"collector": collector})
    if settings.collector.processes > 1:
        return run_processes(settings)
    asyncio.run(serve(settings))
    return 0


async def serve(
    settings: Settings, reuse_port: bool = False, announce: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGTERM/SIGINT; ``announce`` gets the URL line once serving (default: print
    "listening on"); ``reuse_port`` as ``CollectorServer.start``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        if not stop.is_set():
            arm_stop_deadline("collector", settings.health.stop_within_s)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    server = CollectorServer(settings, registry=REGISTRY)
    url = await server.start(reuse_port=reuse_port)
    if announce is not None:
        announce(url)
    else:
        print(f"webhouse collector listening on {url} (raw events -> {server.topics.raw_events})", flush=True)
    try:
        await stop.wait()
        log.info("stopping: finishing open requests, flushing the producer")
    finally:
        await server.stop()
