"""The local cluster's layout and node configs, without starting a JVM."""

from __future__ import annotations

import base64
from pathlib import Path

from pipeline.kafka_admin import min_insync_for, replication_for
from pipeline.kafka_cluster import LocalCluster, new_cluster_id
from pipeline.kafka_local import LocalKafka, internal_topic_settings
from pipeline.settings import KafkaSettings


def _properties(node: LocalKafka) -> dict[str, str]:
    lines = [line for line in node._server_properties().splitlines() if line]
    return dict(line.split("=", 1) for line in lines)


def test_cluster_ids_are_what_kafka_accepts() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_three_nodes_share_one_quorum_on_stepped_ports(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:19092", local_controller_port=19093, local_data_dir=tmp_path / "k"
    )
    cluster = LocalCluster.from_settings(kafka, brokers=3)
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    for node_id, node in enumerate(cluster.nodes, start=1):
        props = _properties(node)
        assert props["node.id"] == str(node_id)
        assert props["controller.quorum.voters"] == voters
        assert "controller.quorum.bootstrap.servers" not in props
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["offsets.topic.replication.factor"] == "3"
        assert node.data_dir == (tmp_path / "k" / f"node-{node_id}").resolve()
    # The layout is remembered: loading it again (other settings) gives the same nodes and id.
    again = LocalCluster.from_settings(kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"}), 3)
    assert again.bootstrap == cluster.bootstrap
    assert again.nodes[0].quorum == cluster.nodes[0].quorum


def test_a_single_broker_keeps_its_standalone_settings(tmp_path: Path) -> None:
    node = LocalKafka.ephemeral(tmp_path)
    props = _properties(node)
    assert props["node.id"] == "1" and "controller.quorum.voters" not in props
    assert props["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{node.controller_port}"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert "broker.session.timeout.ms" not in props  # Kafka's default outside the local cluster


def test_internal_topics_follow_the_node_count() -> None:
    assert "transaction.state.log.min.isr=1" in internal_topic_settings(1)
    assert "transaction.state.log.min.isr=2" in internal_topic_settings(3)
    assert "offsets.topic.replication.factor=3" in internal_topic_settings(5)


def test_replication_follows_the_cluster_size() -> None:
    assert [replication_for(n) for n in (1, 2, 3, 5)] == [1, 2, 3, 3]
    assert replication_for(3, configured=5) == 5
    assert [min_insync_for(rf) for rf in (1, 2, 3, 5)] == [1, 1, 2, 3]
