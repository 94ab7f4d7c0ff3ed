"""``webhouse collector --processes N``: N collector processes serving one port.

One collector process uses one core at most (about 100 us of CPU per event, most of it the
per-event Python of mapping, checks, pseudonymisation and Avro: docs/performance.md), so the
other cores of a machine are used the way aiohttp or gunicorn deployments use them: N
processes, each with its own event loop and its own idempotent producer, accepting on the
same port with SO_REUSEPORT (the kernel spreads the connections over them). A request is
served whole by one process, which answers 2xx only once the broker acknowledged all its
events, as a single collector does: the guarantee needs nothing shared.

The parent holds the port (bound with SO_REUSEPORT, never listening, so it takes no
connection) from before the first process starts until the last one stopped: ``--port 0``
gives one free port for all. It starts the processes with ``spawn`` (fresh interpreters: no
thread or lock of the parent's is copied), prints the usual "listening on" line once all
serve, and on SIGTERM or SIGINT passes SIGTERM on and waits for each to finish its open
requests and flush its producer. It does not restart a process that died: it stops the
others and exits 1, so that what started the command (systemd, compose) restarts the whole,
with every process's state fresh. A process whose parent is gone (SIGKILLed) stops itself.

Metrics: each process counts into prometheus_client's multiprocess files, in a directory made
for the run (``PROMETHEUS_MULTIPROC_DIR``, unless already set), and /metrics, whichever
process answers, gives the sum over all (``CollectorMetrics.exposition``). Process metrics
(``process_*``) are not exported in that mode.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from pipeline.collector.metrics import MULTIPROCESS_DIR_ENV
from pipeline.errors import WebhouseError
from pipeline.settings import Settings

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0  # imports, the topics check (health_timeout_s each), the bind
ORPHAN_CHECK_S = 1.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CollectorProcessError(WebhouseError):
    """A collector process failed to start, or died while the others served."""


@dataclass(slots=True)
class _Child:
    index: int
    process: BaseProcess
    ready: Connection  # the parent's end: the child sends its URL, or why it could not start


def run_processes(settings: Settings, announce: Callable[[str], None] = print) -> int:
    """Serve with ``settings.collector.processes`` processes until SIGTERM/SIGINT; the exit code."""
    collector = settings.collector
    with _metrics_dir(), _reserved_port(collector.host, collector.port) as port:
        shared = settings.model_copy(update={"collector": collector.model_copy(update={"port": port})})
        stop = _StopRequest()
        children: list[_Child] = []
        try:
            for index in range(collector.processes):  # one by one: those started are stopped below
                children.append(_start(shared, index))
            url = _await_ready(children)
            announce(f"webhouse collector listening on {url} with {len(children)} processes")
            return _supervise(children, stop, settings.health.stop_within_s)
        finally:
            _stop_all(children, settings.health.stop_within_s)
            stop.restore()


class _StopRequest:
    """SIGTERM/SIGINT in the parent: remembered (handlers only set a flag), handlers restored at the end."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@contextmanager
def _metrics_dir() -> Iterator[None]:
    if os.environ.get(MULTIPROCESS_DIR_ENV):  # the operator's own: kept as it is
        yield
        return
    directory = tempfile.mkdtemp(prefix="webhouse-collector-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = directory  # inherited by the spawned processes
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR_ENV]
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _reserved_port(host: str, port: int) -> Iterator[int]:
    """The port, bound with SO_REUSEPORT and not listening: no other program takes it meanwhile."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise CollectorProcessError("--processes needs SO_REUSEPORT (Linux): run a process per port instead")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            holder.bind((host, port))
        except OSError as exc:
            raise CollectorProcessError(f"cannot bind {host}:{port}: {exc}") from exc
        yield int(holder.getsockname()[1])


def _start(settings: Settings, index: int) -> _Child:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(
        target=_serve_one, args=(settings, child_end), name=f"webhouse-collector-{index}", daemon=False
    )
    process.start()
    child_end.close()
    return _Child(index, process, parent_end)


def _serve_one(settings: Settings, ready: Connection) -> None:
    """One collector process (spawned): serve until SIGTERM, reporting the URL once it serves."""
    import asyncio

    from pipeline.collector.cli import serve

    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    _stop_when_orphaned(os.getppid())
    try:
        asyncio.run(serve(settings, reuse_port=True, announce=ready.send))
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the parent gone: the exception raised says it all
            ready.send(f"error: {type(exc).__name__}: {exc}")
        raise


def _stop_when_orphaned(parent: int) -> None:
    """A parent SIGKILLed cannot pass a stop on: its processes would go on serving the port beside
    the next run's. Each checks every second that it still has its parent, else stops itself."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        log.error("the collector's parent process %d is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _await_ready(children: list[_Child]) -> str:
    """The URL served (the same port for all), once every child serves; a child that failed or
    exited first fails the start."""
    url = ""
    for child in children:
        if not child.ready.poll(START_TIMEOUT_S):
            raise CollectorProcessError(
                f"collector process {child.index} did not start within {START_TIMEOUT_S:.0f}s"
            )
        try:
            message = child.ready.recv()
        except EOFError:
            raise CollectorProcessError(
                f"collector process {child.index} exited while starting (code {child.process.exitcode})"
            ) from None
        if not str(message).startswith("http"):
            raise CollectorProcessError(f"collector process {child.index} could not start: {message}")
        url = url or str(message).split()[0]
    return url


def _supervise(children: list[_Child], stop: _StopRequest, stop_within_s: float) -> int:
    """Until a stop is asked (0 once all stopped cleanly) or a process dies (1)."""
    sentinels = {child.process.sentinel: child for child in children}
    while stop.signal is None:
        ended = wait(list(sentinels), timeout=0.5)
        if ended and stop.signal is None:
            child = sentinels[ended[0]]  # type: ignore[index]  # a sentinel is an int
            child.process.join()
            log.error("collector process %d exited with code %s: stopping the others", child.index,
                      child.process.exitcode)  # fmt: skip
            return 1
    log.info("%s received: stopping %d collector processes", signal.Signals(stop.signal).name, len(children))
    failed = [abs(code) for code in _stop_all(children, stop_within_s) if code]
    return max(failed) if failed else 0


def _stop_all(children: list[_Child], stop_within_s: float) -> list[int | None]:
    """SIGTERM to each still running, then wait for it (each stops within ``stop_within_s`` by its
    own deadline; killed if it has not a little after that)."""
    for child in children:
        if child.process.exitcode is None and child.process.pid is not None:
            os.kill(child.process.pid, signal.SIGTERM)
    for child in children:
        child.process.join(stop_within_s + 5.0)
        if child.process.exitcode is None:
            log.error("collector process %d did not stop: killing it", child.index)
            child.process.kill()
            child.process.join()
        child.ready.close()
    return [child.process.exitcode for child in children]
