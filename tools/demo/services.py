"""Running the pipeline's services as child processes, and stopping them cleanly.

The demo starts each service the way an operator would (`webhouse collector`, `webhouse
worker`, `webhouse sink`) so it proves the real commands fit together. Children get
their settings through WEBHOUSE_* variables, write logs to files, and are stopped in
reverse order with SIGTERM (then SIGKILL after a grace period), also on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pipeline.errors import WebhouseError

log = logging.getLogger(__name__)


class ServiceError(WebhouseError):
    """A demo service failed to start or died while it was needed."""


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ServiceGroup:
    """Child processes started in order and stopped in reverse order."""

    env: Mapping[str, str]
    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, *args: str, extra_env: Mapping[str, str] | None = None) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "tools.cli", *args]
        service = Service(name, argv, self.log_dir / f"{name}.log", {**self.env, **(extra_env or {})})
        self._spawn(service)
        self.services.append(service)
        return service

    def restart(self, service: Service) -> None:
        """Start ``service`` again, same command and environment (a supervisor's restart); the
        previous process must have exited."""
        if service.process is not None and service.process.poll() is None:
            raise ServiceError(f"{service.name} (pid {service.process.pid}) is still running")
        self._spawn(service)

    def _spawn(self, service: Service) -> None:
        with open(service.log_path, "ab") as out:
            service.process = subprocess.Popen(
                service.argv,
                env={**os.environ, **service.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
            )
        service.starts += 1
        log.info("started %s (pid %d), log %s", service.name, service.process.pid, service.log_path)

    def named(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise ServiceError(f"no service named {name!r}")

    def wait_until(self, service: Service, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if ready():
                return
            time.sleep(0.3)
        raise ServiceError(f"{service.name} not {what} after {timeout_s:.0f}s; log:\n{service.log_tail()}")

    def check_alive(self) -> None:
        for service in self.services:
            assert service.process is not None
            code = service.process.poll()
            if code is not None:
                raise ServiceError(f"{service.name} exited with code {code}; log:\n{service.log_tail()}")

    def stop_all(self, grace_s: float = 20.0) -> None:
        for service in reversed(self.services):
            proc = service.process
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", service.name, grace_s)
                proc.kill()
                proc.wait(timeout=10)
        self.services.clear()

    def __enter__(self) -> ServiceGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()
