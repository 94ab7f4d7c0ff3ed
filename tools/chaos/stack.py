"""One run's stack: its own broker, the demo's services, and a supervisor that restarts them.

The services are started by ``tools.demo.run.start_services`` (the demo's own function, so a
new runtime behind the same commands is tested unchanged) in a ``ServiceGroup``. The broker is
a local one of its own in the run's directory, so that killing it touches nothing else. A
supervisor thread restarts any service that is gone (after the fault's hold time when we
killed it, at once when it exited by itself: a liveness exit is a restart request), as
systemd or Kubernetes would, and counts the exits it did not cause.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

from pipeline.kafka_local import LocalKafka, free_port
from tools.chaos.plan import BROKER, Fault
from tools.demo.services import Service, ServiceError, ServiceGroup

log = logging.getLogger(__name__)

WAIT_UP_S = 30.0  # a kill waits this long for its target to be back from the last one
CRASH_LOOP = 12  # exits of one service we did not cause before the run is given up


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = LocalKafka.ephemeral(workdir / "kafka")
        self.collector_port = free_port()
        self.group: ServiceGroup | None = None
        self.faults: Counter[str] = Counter()  # faults done, by label
        self.skipped: Counter[str] = Counter()  # kills whose target did not come back in time
        self.unexpected: Counter[str] = Counter()  # exits we did not cause (code != 0 or crash)
        self.exit_codes: dict[str, list[int]] = {}
        self._held: dict[str, float] = {}  # service -> not before (monotonic), after our kill
        self._killed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    def up(self) -> None:
        self.broker.up()

    def supervise(self, group: ServiceGroup) -> None:
        """Start restarting ``group``'s services when they are gone."""
        self.group = group
        self._supervisor.start()

    # -- faults ----------------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """Do ``fault`` (blocks for a broker fault's hold time)."""
        log.info("fault at %.1fs: %s %s (hold %.1fs)", fault.at_s, fault.action, fault.target, fault.hold_s)
        if fault.target == BROKER:
            self.faults[fault.label] += 1
            self._broker_fault(fault)
            return
        assert self.group is not None
        deadline = time.monotonic() + WAIT_UP_S
        while True:
            with self._lock:
                service = self.group.named(fault.target)
                proc = service.process
                if proc is not None and proc.poll() is None:
                    self.faults[fault.label] += 1
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                    self._killed.add(service.name)
                    self._held[service.name] = time.monotonic() + fault.hold_s
                    return
            if time.monotonic() >= deadline:
                log.info("%s did not come back within %.0fs: nothing to kill", fault.target, WAIT_UP_S)
                self.skipped[fault.label] += 1
                return
            time.sleep(0.1)  # down from the last fault: kill it once it is back

    def _broker_fault(self, fault: Fault) -> None:
        pid = self.broker.pid()
        if pid is None:
            raise ServiceError("the broker is not running")
        if fault.action == "pause":
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(fault.hold_s)
            finally:
                os.kill(pid, signal.SIGCONT)
            return
        self.broker.kill()
        time.sleep(fault.hold_s)
        self.broker.up()

    # -- supervision -----------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stop.wait(0.3):
            with self._lock:
                assert self.group is not None
                for service in self.group.services:
                    self._revive(service)

    def _revive(self, service: Service) -> None:
        proc = service.process
        if proc is None or proc.poll() is None:
            return
        if time.monotonic() < self._held.get(service.name, 0.0):
            return
        if service.name in self._killed:
            self._killed.discard(service.name)
        else:
            self.unexpected[service.name] += 1
            self.exit_codes.setdefault(service.name, []).append(proc.returncode)
            log.warning("%s exited by itself (code %s); restarting it", service.name, proc.returncode)
        assert self.group is not None
        self.group.restart(service)

    def check(self) -> None:
        """Raise when a service keeps dying on its own (the run cannot settle)."""
        for name, exits in self.unexpected.items():
            if exits >= CRASH_LOOP:
                assert self.group is not None
                raise ServiceError(
                    f"{name} exited {exits} times by itself (codes {self.exit_codes[name]}); log:\n"
                    + self.group.named(name).log_tail()
                )

    # -- teardown --------------------------------------------------------------------------------
    def stop_supervising(self) -> None:
        """Before the services are stopped: a stopped service must stay stopped."""
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=10)

    def close(self) -> None:
        self.stop_supervising()
        try:
            if self.group is not None:
                self.group.stop_all()
        finally:
            self.broker.down()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
