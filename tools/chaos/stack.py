"""One run's stack: its own broker (or cluster), the services, and a supervisor that restarts them.

With one worker and one sink the services are started by ``tools.demo.run.start_services``
(the demo's own function, so a new runtime behind the same commands is tested unchanged);
with more, ``start_scaled_services`` starts N ``webhouse worker`` and M ``webhouse sink``
processes in the same consumer groups (Kafka's group protocol splits the partitions), each
worker with an instance id of its own (its transactional ids derive from it). The broker is a
local one of its own in the run's directory, or the ``LocalCluster`` the caller gives, so that
killing it touches nothing else. A supervisor thread restarts any service that is gone (after
the fault's hold time when we killed it, at once when it exited by itself: a liveness exit is
a restart request), as systemd or Kubernetes would, counts the exits it did not cause, and
reads the services' rebalance counters (``tools.chaos.rebalances``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from types import TracebackType

from pipeline.errors import LocalKafkaError
from pipeline.kafka_cluster import LocalCluster
from pipeline.kafka_local import LocalKafka, free_port
from tools.chaos.plan import BROKER, Fault, service_names
from tools.chaos.rebalances import RebalanceCount
from tools.demo.run import http_ok
from tools.demo.services import Service, ServiceError, ServiceGroup

log = logging.getLogger(__name__)

WAIT_UP_S = 30.0  # a kill waits this long for its target to be back from the last one
CRASH_LOOP = 12  # exits of one service we did not cause before the run is given up
IN_SYNC_S = 60.0  # a restarted node gets this long to catch up before the next fault may come
# A killed node recovers its logs before it answers: on the shared 2-core machine, with 3 workers
# and 2 sinks running, that took 105 s, past the 60 s a normal start is given.
RESTART_S = 180.0
SCRAPE_EVERY_S = 1.0


def start_worker(group: ServiceGroup, name: str, separate_triggers: bool = False) -> Service:
    """One more ``webhouse worker`` in the group's consumer groups, with a stable instance id of its
    own (a restarted one fences its killed predecessor's open transaction at once), a data
    directory and a metrics port of its own (its rebalance counter is read there)."""
    env = {
        "WEBHOUSE_METRICS__PORT": str(free_port()),
        "WEBHOUSE_WORKER__INSTANCE_ID": name,
        "WEBHOUSE_WORKER__DATA_DIR": str(Path(group.env["WEBHOUSE_WORKER__DATA_DIR"]) / name),
    }
    if separate_triggers:
        env["WEBHOUSE_WORKER__EXTENSIONS"] = "[]"
    return group.start(name, "worker", extra_env=env)


def start_collector(group: ServiceGroup, collector_url: str) -> Service:
    collector = group.start("collector", "collector")
    group.wait_until(collector, lambda: http_ok(f"{collector_url}/health"), 60, "answering")
    return collector


def start_scaled_services(
    group: ServiceGroup, collector_url: str, workers: int, sinks: int, separate_triggers: bool = False
) -> None:
    """The demo's services with ``workers`` worker and ``sinks`` sink processes (one consumer group
    each: Kafka's group protocol splits the partitions), named as ``plan.service_names`` does."""
    start_collector(group, collector_url)
    for name in service_names(workers, sinks, separate_triggers)[1:]:
        metrics = {"WEBHOUSE_METRICS__PORT": str(free_port())}
        if name.startswith("worker"):
            start_worker(group, name, separate_triggers)
        elif name == "triggers":
            group.start(name, "triggers", "run", extra_env=metrics)
        else:
            group.start(name, "sink", extra_env=metrics)


class Stack:
    def __init__(self, workdir: Path, cluster: LocalCluster | None = None) -> None:
        """``cluster``: run on these nodes (started and stopped by the caller); none: on a broker
        of the stack's own."""
        self.workdir = workdir
        self.cluster = cluster
        self.broker = LocalKafka.ephemeral(workdir / "kafka") if cluster is None else None
        self.rebalances = RebalanceCount()
        self.collector_port = free_port()
        self.group: ServiceGroup | None = None
        self.faults: Counter[str] = Counter()  # faults done, by label
        self.skipped: Counter[str] = Counter()  # kills whose target did not come back in time
        self.fault_errors: list[str] = []  # faults that could not be carried out (``_inject_all``)
        self.unexpected: Counter[str] = Counter()  # exits we did not cause (code != 0 or crash)
        self.exit_codes: dict[str, list[int]] = {}
        self._held: dict[str, float] = {}  # service -> not before (monotonic), after our kill
        self._killed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)

    @property
    def bootstrap(self) -> str:
        if self.cluster is not None:
            return self.cluster.bootstrap
        assert self.broker is not None
        return self.broker.bootstrap

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    def up(self) -> None:
        if self.broker is not None:
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
        """Pause or kill the broker (on a cluster: node ``fault.node``); a killed one is started
        again after the hold, and a cluster's node is given time to be back in every ISR, as an
        operator would wait before touching the next node."""
        broker = self.cluster.node(fault.node or 1) if self.cluster is not None else self.broker
        assert broker is not None
        pid = broker.pid()
        if pid is None:
            raise ServiceError(f"the broker {broker.bootstrap} is not running")
        if fault.action == "pause":
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(fault.hold_s)
            finally:
                os.kill(pid, signal.SIGCONT)
        else:
            broker.kill()
            time.sleep(fault.hold_s)
            _restart(broker)
        if self.cluster is not None:
            self._wait_in_sync()

    def _wait_in_sync(self) -> None:
        assert self.cluster is not None
        deadline = time.monotonic() + IN_SYNC_S
        while time.monotonic() < deadline:
            if self.cluster.under_replicated() == []:
                return
            time.sleep(0.5)
        log.warning("partitions still under-replicated %.0fs after the node came back", IN_SYNC_S)

    # -- supervision -----------------------------------------------------------------------------
    def _supervise(self) -> None:
        scraped = 0.0
        while not self._stop.wait(0.3):
            with self._lock:
                assert self.group is not None
                for service in self.group.services:
                    self._revive(service)
            if time.monotonic() - scraped >= SCRAPE_EVERY_S:
                self.scrape()
                scraped = time.monotonic()

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until every service that serves metrics answers ``/health/ready`` (a worker: each stage
        owns partitions; a sink: it has partitions), so the faults hit formed consumer groups."""
        assert self.group is not None
        for service in self.group.services:
            port = service.env.get("WEBHOUSE_METRICS__PORT")
            if port:
                ready = partial(http_ok, f"http://127.0.0.1:{port}/health/ready")
                self.group.wait_until(service, ready, timeout_s, "ready")

    def scrape(self) -> None:
        """Read the rebalance counters of every live service that serves metrics."""
        assert self.group is not None
        with self._lock:
            live = [
                (s.name, s.starts, int(s.env["WEBHOUSE_METRICS__PORT"]))
                for s in self.group.services
                if s.env.get("WEBHOUSE_METRICS__PORT") and s.process is not None and s.process.poll() is None
            ]
        for name, start, port in live:
            self.rebalances.scrape(name, start, port)

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
            if self.broker is not None:
                self.broker.down()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _restart(broker: LocalKafka) -> None:
    """Start a killed broker again; while its process lives, give it ``RESTART_S`` in all to
    answer (log recovery after an unclean stop is slower than a start)."""
    deadline = time.monotonic() + RESTART_S
    try:
        broker.up()
    except LocalKafkaError:
        while broker.pid() is not None and time.monotonic() < deadline:
            if broker.answers(timeout_s=1.0):
                log.info("broker %s answered after a slow restart", broker.bootstrap)
                return
            time.sleep(0.5)
        raise
