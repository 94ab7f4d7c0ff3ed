"""A local Apache Kafka cluster of N nodes on loopback: `webhouse kafka up --brokers 3`.

Every node is a combined broker and controller (``process.roles=broker,controller``) and
the controllers form a static KRaft quorum of N voters, so 3 JVMs make a cluster that
survives the loss of any one node (2 of 3 voters elect a leader, 2 of 3 replicas stay in
sync). Kafka advises separate controllers in production; on one machine combined nodes
halve the JVMs and exercise the same replication and failover paths clients see.

Layout under ``data_dir``: ``cluster.json`` (the cluster id and each node's ports) and one
``node-<id>/`` directory per node, each a ``LocalKafka`` data directory. Node ``i`` (from 1)
listens on ``port + 2(i-1)`` and its controller on ``controller_port + 2(i-1)``: with the
defaults 9092/9093, 9094/9095, 9096/9097.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confluent_kafka.admin import AdminClient

from pipeline.errors import LocalKafkaError
from pipeline.immutable import immutable
from pipeline.kafka_local import BrokerStatus, LocalKafka, Quorum, free_port
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)
LAYOUT = "cluster.json"


@immutable
class UnderReplicated:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@immutable
class ClusterStatus:
    nodes: list[tuple[int, BrokerStatus]]  # (node id, status)
    brokers_seen: list[int]  # node ids in the metadata of a live node
    under_replicated: list[UnderReplicated] | None  # None: no node answered

    @property
    def running(self) -> bool:
        return all(status.running for _, status in self.nodes)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka's own
    ``Uuid.randomUuid`` makes them (never starting with '-', which a command line would misread)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class LocalCluster:
    """N ``LocalKafka`` nodes sharing one static quorum; started together, stopped together."""

    def __init__(self, data_dir: Path, nodes: list[LocalKafka]) -> None:
        self.data_dir = data_dir.resolve()
        self.nodes = nodes

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def is_cluster(cls, data_dir: Path) -> bool:
        return (data_dir / LAYOUT).exists()

    @classmethod
    def create(
        cls,
        data_dir: Path,
        brokers: int,
        ports: list[tuple[int, int]],
        kafka: KafkaSettings,
        heap: str | None = None,
    ) -> LocalCluster:
        """A new cluster layout (or the existing one: its ports and id win) of ``brokers`` nodes."""
        if cls.is_cluster(data_dir):
            return cls.load(data_dir, kafka, heap)
        if len(ports) != brokers or brokers < 1:
            raise LocalKafkaError(f"{brokers} brokers need {brokers} (port, controller port) pairs")
        host = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")[0] or "127.0.0.1"
        layout = {
            "cluster_id": new_cluster_id(),
            "host": host,
            "nodes": [{"id": i + 1, "port": p, "controller_port": c} for i, (p, c) in enumerate(ports)],
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / LAYOUT).write_text(json.dumps(layout, indent=2))
        return cls.load(data_dir, kafka, heap)

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, brokers: int) -> LocalCluster:
        """The cluster under ``kafka.local_data_dir``; ports step by 2 from the configured ones."""
        first = kafka.bootstrap_servers.split(",")[0].strip()
        port = int(first.rpartition(":")[2])
        ports = [(port + 2 * i, kafka.local_controller_port + 2 * i) for i in range(brokers)]
        return cls.create(kafka.local_data_dir, brokers, ports, kafka)

    @classmethod
    def ephemeral(cls, data_dir: Path, brokers: int = 3, heap: str = "320m") -> LocalCluster:
        """A cluster on free loopback ports (tests, benchmarks)."""
        ports = [(free_port(), free_port()) for _ in range(brokers)]
        return cls.create(data_dir, brokers, ports, KafkaSettings(), heap)

    @classmethod
    def load(cls, data_dir: Path, kafka: KafkaSettings, heap: str | None = None) -> LocalCluster:
        layout = json.loads((data_dir / LAYOUT).read_text())
        host = layout["host"]
        voters = tuple((n["id"], host, n["controller_port"]) for n in layout["nodes"])
        quorum = Quorum(layout["cluster_id"], voters)
        nodes = [
            LocalKafka(
                data_dir / f"node-{n['id']}",
                f"{host}:{n['port']}",
                n["controller_port"],
                kafka.local_version,
                kafka.local_jar_cache,
                heap=heap or kafka.local_heap,
                start_timeout_s=kafka.local_start_timeout_s,
                node_id=n["id"],
                quorum=quorum,
            )
            for n in layout["nodes"]
        ]
        return cls(data_dir, nodes)

    # -- lifecycle -----------------------------------------------------------------------------------
    def up(self) -> ClusterStatus:
        """Spawn every node not running, then wait for each and for all to be in the metadata."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:  # first starts format storage: a JVM each
            procs = list(pool.map(lambda node: node.start(), self.nodes))
        for node, proc in zip(self.nodes, procs, strict=True):
            node.wait_ready(proc)
        self.wait_brokers(len(self.nodes))
        return self.status()

    def start_node(self, node_id: int) -> None:
        """Bring one node back (after ``kill``); returns once it answers."""
        node = self.node(node_id)
        node.wait_ready(node.start())

    def down(self) -> int:
        """Stop every node at once (stopping them one by one would leave the last without a quorum
        for its controlled shutdown); the number that ran."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            return sum(pool.map(lambda node: node.down(), self.nodes))

    def wait_brokers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until ``count`` brokers are registered and unfenced in the cluster metadata."""
        deadline = time.monotonic() + timeout_s
        seen: list[int] = []
        while time.monotonic() < deadline:
            seen = self._brokers_seen()
            if len(seen) >= count:
                return
            time.sleep(0.3)
        raise LocalKafkaError(f"only brokers {seen} of {count} joined the cluster in {timeout_s:.0f}s")

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def _brokers_seen(self) -> list[int]:
        try:
            metadata = self._admin().list_topics(timeout=2)
        except Exception as exc:  # KafkaException: no node answers (yet)
            log.debug("cluster at %s not answering: %s", self.bootstrap, exc)
            return []
        return sorted(metadata.brokers)

    def under_replicated(self) -> list[UnderReplicated] | None:
        """Partitions with fewer in-sync replicas than replicas; None when no node answers."""
        try:
            metadata = self._admin().list_topics(timeout=5)
        except Exception as exc:  # KafkaException: no node answers
            log.debug("cluster at %s not answering: %s", self.bootstrap, exc)
            return None
        return [
            UnderReplicated(name, p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
            for name, topic in sorted(metadata.topics.items())
            for p in topic.partitions.values()
            if len(p.isrs) < len(p.replicas)
        ]

    def status(self) -> ClusterStatus:
        nodes = [(node.node_id, node.status()) for node in self.nodes]
        return ClusterStatus(nodes, self._brokers_seen(), self.under_replicated())
