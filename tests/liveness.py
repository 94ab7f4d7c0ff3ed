"""What the services' liveness tests share: a service started as its own process by its real
command (a stall exit and a signal only show in a process of its own), its health endpoints
read, the bound a SIGTERM or SIGINT stop must keep, and a clock the test moves by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

STOP_BOUND_S = 30  # the spec: SIGTERM/SIGINT stop a service within 30 s


def start_service(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``webhouse ARGS`` with only ``env``'s WEBHOUSE_* settings (none of the caller's), output
    appended to ``log``."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOUSE_")}
    child.update(env)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tools.cli", *args], env=child, stdout=out, stderr=subprocess.STDOUT
        )


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    """Status and JSON body of ``path`` on the service's metrics (health) port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    """Until ``check()`` (a refused connection counts as not yet); fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not {what} within {timeout_s}s")


class ManualClock:
    """A monotonic clock that moves only when the test sets ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
