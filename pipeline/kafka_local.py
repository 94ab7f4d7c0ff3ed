"""A real local Apache Kafka node (KRaft, broker + controller) run from its Maven Central jars.

A node runs alone (a standalone controller) or as one of the static voters of a local
cluster (``pipeline/kafka_cluster.py``). Used by `webhouse kafka up|down|status`, by
`webhouse demo` and by the test suite's session fixture, so development, CI and the demo
all talk to the same real broker.

The jars are resolved once with Maven (``pipeline/kafka_pom.xml``) into a versioned
cache directory; later starts need no network. Storage is formatted on first start
(``kafka.tools.StorageTool format``), then ``kafka.Kafka`` runs with a
generated ``server.properties`` in the data directory.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import LocalKafkaError
from pipeline.immutable import immutable
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("kafka_pom.xml")  # package data: works from an installed wheel
_READY_MARKER = ".complete"

LOG4J2_YAML = """\
Configuration:
  Appenders:
    File:
      name: FILE
      fileName: "${sys:kafka.logs.dir}/server.log"
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: FILE
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


def resolve_jars(version: str, cache_root: Path) -> Path:
    """The directory holding every jar the broker needs, fetching it with Maven on first use."""
    target = cache_root / version
    if (target / _READY_MARKER).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Maven (`mvn`) is needed once to fetch the Kafka jars; it is not on PATH")
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=cache_root))
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={version}", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    log.info("resolving Apache Kafka %s jars with Maven into %s", version, target)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise LocalKafkaError(
            f"Maven could not resolve Kafka {version} (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-2000:]}"
        )
    (staging / _READY_MARKER).write_text(version)
    try:
        staging.rename(target)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / _READY_MARKER).exists():
            raise
    return target


_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000
_handed: set[int] = set()  # ports this process handed out: never twice
_ports = random.Random()


def free_port() -> int:
    """A free loopback TCP port (for test, bench and demo brokers and services), taken below the
    kernel's ephemeral range where one is known. A port from ``bind(0)`` lies inside that range, so
    between its pick and the server's bind any outgoing connection could take it as its source port
    (a cluster's nodes, started together, connect to each other: seen in CI as a node failing with
    "Address already in use"); below the range only another explicit bind can."""
    low, high = _below_ephemeral()
    for _ in range(200):
        port = _ports.randrange(low, high) if high > low else 0
        if port in _handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = s.getsockname()[1]
        _handed.add(chosen)
        return chosen
    raise LocalKafkaError(f"no free loopback port found in {low}-{high}")


def _below_ephemeral() -> tuple[int, int]:
    """[low, high) of the ports below the ephemeral range; (0, 0) if that range is not known."""
    try:
        first = int(_PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0, 0
    return (_LOWEST_PORT, first) if first - _LOWEST_PORT >= 1_000 else (0, 0)


def _split_host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise LocalKafkaError(f"bootstrap server {first!r} is not host:port")
    return host, int(port)


@immutable
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path


@immutable
class Quorum:
    """The static KRaft voters of a local cluster (every node broker and controller) and its id."""

    cluster_id: str
    voters: tuple[tuple[int, str, int], ...]  # (node id, host, controller port)

    @property
    def size(self) -> int:
        return len(self.voters)

    def voters_setting(self) -> str:
        return ",".join(f"{node}@{host}:{port}" for node, host, port in self.voters)


def internal_topic_settings(replicas: int) -> list[str]:
    """Replication of Kafka's own topics (offsets, transactions, share groups) on ``replicas`` nodes:
    3 copies and a minimum of 2 in sync from 3 nodes up, so group offsets and transactions survive
    the loss of one broker; 1 and 1 on a single node, where transactions need it to run at all."""
    rf = min(3, replicas)
    isr = 2 if rf >= 3 else 1
    return [
        f"offsets.topic.replication.factor={rf}",
        f"transaction.state.log.replication.factor={rf}",
        f"transaction.state.log.min.isr={isr}",
        f"share.coordinator.state.topic.replication.factor={rf}",
        f"share.coordinator.state.topic.min.isr={isr}",
        f"default.replication.factor={rf}",
    ]


# Local cluster only: a killed node is fenced (its partitions get new leaders, it leaves the ISRs)
# after 5 s instead of Kafka's 9 s, well inside the collector's 10 s produce timeout. At 3 s the
# controller of a loaded machine timed out live nodes' heartbeats (risking a false fencing).
FAST_FAILOVER = ["broker.heartbeat.interval.ms=1000", "broker.session.timeout.ms=5000"]


class LocalKafka:
    """Lifecycle of one local broker rooted at ``data_dir`` (alone, or a node of a ``Quorum``)."""

    def __init__(
        self,
        data_dir: Path,
        bootstrap: str,
        controller_port: int,
        version: str,
        jar_cache: Path,
        heap: str = "512m",
        start_timeout_s: float = 60.0,
        node_id: int = 1,
        quorum: Quorum | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.bootstrap = bootstrap
        self.host, self.port = _split_host_port(bootstrap)
        self.controller_port = controller_port
        self.version = version
        self.jar_cache = jar_cache
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.node_id = node_id
        self.quorum = quorum
        self._proc: subprocess.Popen[bytes] | None = None  # set when this object started the broker

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> LocalKafka:
        return cls(
            data_dir=kafka.local_data_dir,
            bootstrap=kafka.bootstrap_servers,
            controller_port=kafka.local_controller_port,
            version=kafka.local_version,
            jar_cache=kafka.local_jar_cache,
            heap=kafka.local_heap,
            start_timeout_s=kafka.local_start_timeout_s,
        )

    @classmethod
    def ephemeral(cls, data_dir: Path, heap: str = "384m") -> LocalKafka:
        """A broker on free loopback ports with the default version and jar cache."""
        defaults = KafkaSettings()
        return cls(
            data_dir=data_dir,
            bootstrap=f"127.0.0.1:{free_port()}",
            controller_port=free_port(),
            version=defaults.local_version,
            jar_cache=defaults.local_jar_cache,
            heap=heap,
        )

    # -- files ---------------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def _server_properties(self) -> str:
        h, p, c = self.host, self.port, self.controller_port
        if self.quorum is None:
            quorum = [f"controller.quorum.bootstrap.servers={h}:{c}"]
        else:
            quorum = [f"controller.quorum.voters={self.quorum.voters_setting()}", *FAST_FAILOVER]
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                *quorum,
                f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                f"advertised.listeners=PLAINTEXT://{h}:{p}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data_dir / 'data'}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                *internal_topic_settings(1 if self.quorum is None else self.quorum.size),
                "offsets.topic.num.partitions=4",
                "transaction.state.log.num.partitions=4",
                "group.initial.rebalance.delay.ms=0",
                "log.cleaner.backoff.ms=5000",
                "",
            ]
        )

    def _java(self, jars: Path, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("Java 17+ is needed to run the local Kafka broker; `java` is not on PATH")
        opts = [f"-Xmx{heap}", f"-Xms{heap}"] if heap else ["-Xmx256m"]
        return [
            java, *opts, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", f"{jars}/*", *args,
        ]  # fmt: skip

    def _format_if_needed(self, jars: Path) -> None:
        """Format on first start: a node of a quorum with the quorum's id and static voters, a lone
        broker with a fresh id as a standalone controller."""
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        if self.quorum is None:
            cluster_id, mode = random_cluster_id(jars, self._java), ["--standalone"]
        else:
            cluster_id, mode = self.quorum.cluster_id, []
        fmt = subprocess.run(
            self._java(
                jars, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                "-c", str(self.data_dir / "server.properties"), *mode,
            ),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise LocalKafkaError(f"formatting Kafka storage failed:\n{(fmt.stdout + fmt.stderr)[-2000:]}")

    # -- lifecycle -----------------------------------------------------------------------
    def _read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def status(self) -> BrokerStatus:
        pid = self._read_pid()
        return BrokerStatus(pid is not None and self.answers(), pid, self.bootstrap, self.data_dir)

    def answers(self, timeout_s: float = 2.0) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            admin.list_topics(timeout=timeout_s)
        except Exception as exc:  # KafkaException: not (yet) reachable
            log.debug("broker at %s not answering: %s", self.bootstrap, exc)
            return False
        return True

    def up(self) -> BrokerStatus:
        """Start the broker (idempotent) and wait until it answers."""
        self.wait_ready(self.start())
        return self.status()

    def start(self) -> subprocess.Popen[bytes] | None:
        """Spawn the broker unless it runs; do not wait (a quorum's nodes must all be spawned before
        any of them can answer). Returns the new process, None when one already ran."""
        if self._read_pid() is not None:
            return None
        jars = resolve_jars(self.version, self.jar_cache)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        (self.data_dir / "server.properties").write_text(self._server_properties())
        (self.data_dir / "log4j2.yaml").write_text(LOG4J2_YAML)
        self._format_if_needed(jars)
        console = open(self.log_dir / "console.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            self._java(jars, "kafka.Kafka", str(self.data_dir / "server.properties"), heap=self.heap),
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.data_dir,
        )  # fmt: skip
        console.close()
        self._proc = proc
        self.pid_file.write_text(str(proc.pid))
        return proc

    def kill(self) -> bool:
        """SIGKILL, no clean shutdown (what a crashed machine does); True if one ran."""
        pid = self._read_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=10)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def wait_ready(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until the broker answers (``proc``: fail early if it exits meanwhile)."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise LocalKafkaError(
                    f"Kafka exited with code {proc.returncode} while starting; log tail:\n{self._log_tail()}"
                )
            if self.answers(timeout_s=1.0):
                return
            time.sleep(0.3)
        raise LocalKafkaError(
            f"Kafka did not answer at {self.bootstrap} within {self.start_timeout_s:.0f}s; "
            f"log tail:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        lines: list[str] = []
        for name in ("console.log", "server.log"):
            path = self.log_dir / name
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()[-15:]
        return "\n".join(lines) or "(no log)"

    def pid(self) -> int | None:
        """The running broker's process id (from its pid file), or None."""
        return self._read_pid()

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker; SIGTERM first (clean shutdown), SIGKILL if it hangs. True if one ran."""
        pid = self._read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            log.warning("Kafka (pid %d) did not stop in %.0fs; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=10)  # reap our own child
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True


def random_cluster_id(jars: Path, java: Callable[..., list[str]]) -> str:
    """A fresh cluster id from Kafka's own StorageTool."""
    uuid = subprocess.run(
        java(jars, "kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=False
    )
    cluster_id = uuid.stdout.strip().splitlines()[-1] if uuid.returncode == 0 and uuid.stdout else ""
    if not cluster_id:
        raise LocalKafkaError(f"could not generate a Kafka cluster id: {uuid.stderr[-1000:]}")
    return cluster_id


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise just probe.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def broker_or_ephemeral(bootstrap: str | None) -> Iterator[str]:
    """``bootstrap`` if given, else a throwaway local broker for the block (benchmarks, one-off runs)."""
    if bootstrap:
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="webhouse-kafka-") as tmp:
        broker = LocalKafka.ephemeral(Path(tmp))
        broker.up()
        try:
            yield broker.bootstrap
        finally:
            broker.down()
