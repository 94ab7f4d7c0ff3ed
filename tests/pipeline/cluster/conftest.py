"""A 3-node local Kafka cluster for the tests in this package only (~15-20 s to start, 3 JVMs of
320 MiB heap): package-scoped, so it stops when they are done instead of idling through the rest
of the run. A test that kills a node brings it back before it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.kafka_cluster import LocalCluster


@pytest.fixture(scope="package")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster.ephemeral(tmp_path_factory.mktemp("kafka-cluster"), brokers=3)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()
