"""Liveness for the long-running services: "no progress while there is work", health endpoints,
and stops that cannot hang.

A service that is alive but lands nothing is worse than one that crashed: nobody restarts it.
So a service's loop tells a ``Health`` two things, cheaply, on every turn:

- ``beat(has_work)``: the loop came round, and whether work is waiting (messages buffered, lag,
  or no partitions assigned while it should consume);
- ``progressed()``: work moved forward (a message handled, a batch landed);
- ``within(what)``: the loop enters a call that must return within ``call_within_s`` (a
  transaction commit): past that it is a stall at once, without waiting for ``stall_after_s``.
  librdkafka's ``send_offsets_to_transaction`` can wait for ever once the group coordinator's
  broker node is gone from the metadata (its issues #5456 and #5511, open): a stage stuck there
  restarts after ``call_within_s`` instead of two minutes.

``Health.stall()`` names what is wrong: the loop has not come round for ``stall_after_s`` (stuck
in a flush or a metadata wait), or it had work that long without progress (an empty consumer
group, lag not shrinking). A ``Watchdog`` thread checks it: it logs the stall as an error and
calls the service's ``on_stall`` (``StallExit`` by default: stop the loop, and exit the process
non-zero if it does not end within a grace period) so a supervisor restarts it.

``/health`` (200 ok, 503 stalled) and ``/health/ready`` (200 when the service says it is ready,
e.g. partitions assigned) are served next to ``/metrics`` by ``pipeline.metrics_http``.

``stop_on_signals`` makes SIGTERM and SIGINT stop a loop with a bound: past ``stop_within_s``
the process exits anyway (``EXIT_STOP_TIMEOUT``), as a supervisor would kill it, but with the
reason in the log.

Plugging a service in (the sink, ``sinks/cli.py``, is the example): make a ``Health`` from
``settings.health``; pass it to ``serve_metrics``; report ``beat``/``progressed``/``set_ready``
from the loop; start a ``Watchdog`` with ``StallExit(stop, ...)``; install
``stop_on_signals`` (or, in asyncio, ``arm_stop_deadline`` in the signal handler); return
``EXIT_STALLED`` when ``health.stalled`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from pipeline.immutable import immutable

log = logging.getLogger(__name__)

EXIT_STALLED = 3  # the watchdog found no progress while there was work
EXIT_STOP_TIMEOUT = 4  # a SIGTERM/SIGINT stop did not finish within its bound

Clock = Callable[[], float]


@immutable
class HealthStatus:
    ok: bool
    ready: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "stalled", "ready": self.ready, "detail": self.detail}


@dataclass
class Health:
    """What one service's loop reports; thread-safe enough for one writer and readers (floats)."""

    service: str
    stall_after_s: float
    clock: Clock = time.monotonic
    call_within_s: float = float("inf")
    _beat_at: float = field(init=False)
    _progress_at: float = field(init=False)
    _work_since: float | None = field(init=False, default=None)
    _ready: bool = field(init=False, default=False)
    _ready_detail: str = field(init=False, default="starting")
    stalled: str | None = field(init=False, default=None)  # the first stall the watchdog acted on
    _call: tuple[str, float] | None = field(init=False, default=None)  # in ``within``: what, since

    def __post_init__(self) -> None:
        now = self.clock()
        self._beat_at = self._progress_at = now

    def beat(self, has_work: bool) -> None:
        """The loop came round; ``has_work``: something is waiting to be done."""
        now = self.clock()
        self._beat_at = now
        if not has_work:
            self._work_since = None
        elif self._work_since is None:
            self._work_since = now

    def progressed(self) -> None:
        self._progress_at = self.clock()

    @contextmanager
    def within(self, what: str) -> Iterator[None]:
        """The body is a call that must return within ``call_within_s``."""
        self._call = (what, self.clock())
        try:
            yield
        finally:
            self._call = None

    def set_ready(self, ready: bool, detail: str = "") -> None:
        self._ready, self._ready_detail = ready, detail

    def stall(self) -> str | None:
        """Why the service is stalled, or None."""
        now = self.clock()
        call = self._call
        if call is not None and now - call[1] >= self.call_within_s:
            return f"{self.service}: {call[0]} has not returned for {now - call[1]:.0f}s"
        quiet = now - self._beat_at
        if quiet >= self.stall_after_s:
            return f"{self.service}: the loop has not come round for {quiet:.0f}s"
        if self._work_since is not None:
            waiting = now - max(self._work_since, self._progress_at)
            if waiting >= self.stall_after_s:
                return f"{self.service}: no progress for {waiting:.0f}s while there is work"
        return None

    def status(self) -> HealthStatus:
        problem = self.stalled or self.stall()
        if problem is not None:
            return HealthStatus(False, False, problem)
        return HealthStatus(True, self._ready, "ready" if self._ready else self._ready_detail)


class StallExit:
    """The default reaction to a stall: set ``stop`` (the loop ends as on SIGTERM, its caller
    returns ``EXIT_STALLED``), and exit the process after ``grace_s`` if the loop is stuck."""

    def __init__(self, stop: threading.Event, grace_s: float, exit: Callable[[int], None] = os._exit) -> None:
        self.stop, self.grace_s, self._exit = stop, grace_s, exit

    def __call__(self, reason: str) -> None:
        self.stop.set()
        timer = threading.Timer(self.grace_s, self._give_up, args=(reason,))
        timer.daemon = True
        timer.start()

    def _give_up(self, reason: str) -> None:
        log.error("still running %.0fs after the stall (%s): exiting %d\n%s", self.grace_s, reason,
                  EXIT_STALLED, thread_stacks())  # fmt: skip
        self._exit(EXIT_STALLED)


def thread_stacks() -> str:
    """Where every thread of the process is, by name: logged with a stall, so that the log says
    what the loop was stuck in (a stall seen in a 10M-event run left only its reason)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():  # public, documented in sys (a CPython detail)
        stack = "".join(traceback.format_stack(frame))
        parts.append(f"thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


class Watchdog:
    """A daemon thread checking ``health`` every ``interval_s``; acts once, on the first stall."""

    def __init__(self, health: Health, on_stall: Callable[[str], None], interval_s: float = 1.0) -> None:
        self.health, self.on_stall, self.interval_s = health, on_stall, interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{health.service}-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()

    def check(self) -> bool:
        """One check; True when it found (and acted on) a stall."""
        reason = self.health.stall()
        if reason is None:
            return False
        self.health.stalled = reason
        log.error("%s; exiting so that a supervisor restarts the service\n%s", reason, thread_stacks())
        self.on_stall(reason)
        return True

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            if self.check():
                return


class HealthView(Protocol):
    """What the endpoints read: one service's ``Health``, or several combined (``AllHealth``)."""

    def status(self) -> HealthStatus: ...


class AllHealth:
    """A process running several loops (the worker's stages): ok and ready only if every one is."""

    def __init__(self, parts: list[Health]) -> None:
        self.parts = parts

    def status(self) -> HealthStatus:
        statuses = [h.status() for h in self.parts]
        worst = [s.detail for s in statuses if not s.ok] or [s.detail for s in statuses if not s.ready]
        ok, ready = all(s.ok for s in statuses), all(s.ready for s in statuses)
        return HealthStatus(ok, ok and ready, "; ".join(worst) if worst else "ready")

    @property
    def stalled(self) -> str | None:
        return next((h.stalled for h in self.parts if h.stalled), None)


def health_routes(health: HealthView, fallback: Any) -> Any:
    """A WSGI app: ``/health`` and ``/health/ready`` from ``health``, anything else ``fallback``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/health", "/health/ready"):
            answer: Iterable[bytes] = fallback(environ, start_response)
            return answer
        status = health.status()
        good = status.ok if path == "/health" else status.ok and status.ready
        body = json.dumps(status.to_json()).encode()
        start_response(
            "200 OK" if good else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def arm_stop_deadline(service: str, stop_within_s: float, exit: Callable[[int], None] = os._exit) -> None:
    """Exit ``EXIT_STOP_TIMEOUT`` if the process is still there ``stop_within_s`` from now: a stop
    that was asked for must not hang on a dead broker (call it when the stop is asked)."""

    def give_up() -> None:
        log.error("%s did not stop within %.0fs of being asked: exiting %d", service, stop_within_s,
                  EXIT_STOP_TIMEOUT)  # fmt: skip
        exit(EXIT_STOP_TIMEOUT)

    timer = threading.Timer(stop_within_s, give_up)
    timer.daemon = True
    timer.start()


def stop_on_signals(
    stop: Callable[[], None],
    service: str,
    stop_within_s: float,
    exit: Callable[[int], None] = os._exit,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """SIGTERM/SIGINT call ``stop`` and arm the stop deadline. Main thread only (signal.signal);
    an asyncio service does the same with ``loop.add_signal_handler`` and ``arm_stop_deadline``."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("%s: %s received, stopping (at most %.0fs)", service, signal.Signals(signum).name,
                 stop_within_s)  # fmt: skip
        arm_stop_deadline(service, stop_within_s, exit)
        stop()

    for sig in signals:
        signal.signal(sig, handler)
