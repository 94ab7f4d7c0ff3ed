"""Ports for the brokers and services the project starts itself: free, and not ephemeral."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline import kafka_local
from pipeline.errors import LocalKafkaError
from pipeline.kafka_local import free_port


def test_ports_come_from_below_the_ephemeral_range_and_never_twice() -> None:
    """An ephemeral port can be taken by any outgoing connection between its pick and the
    server's bind (a cluster node failed with "Address already in use" in CI)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < low for port in ports)


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        monkeypatch.setattr(kafka_local, "_below_ephemeral", lambda: (port, port + 1))
        with pytest.raises(LocalKafkaError, match="no free loopback port"):
            free_port()
