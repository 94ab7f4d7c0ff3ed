"""Counting rebalances from the services' counters: by stage, kept across a process's restarts."""

from __future__ import annotations

import socket
import threading
from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.runtime.metrics import RuntimeMetrics
from sinks.metrics import SinkMetrics
from tools.chaos.rebalances import RebalanceCount, rebalances_in


def test_the_stages_and_the_sinks_counters_are_read_by_stage() -> None:
    registry = CollectorRegistry()
    runtime = RuntimeMetrics(registry)
    runtime.rebalances.labels("worker").inc(3)
    runtime.rebalances.labels("triggers-route").inc()
    sink = SinkMetrics()
    sink.rebalances.inc(2)
    assert rebalances_in(generate_latest(registry).decode()) == Counter({"worker": 3, "triggers-route": 1})
    assert rebalances_in(generate_latest(sink.registry).decode()) == Counter({"sink": 2})


def test_a_restarted_process_adds_to_the_count_and_a_rescrape_does_not() -> None:
    count = RebalanceCount()
    count.observe("worker-1", 1, Counter({"worker": 2}))
    count.observe("worker-1", 1, Counter({"worker": 3}))  # the same process, later: 3 in all
    count.observe("worker-1", 2, Counter({"worker": 1}))  # restarted: its counter began at 0
    count.observe("sink-1", 1, Counter({"sink": 4}))
    assert count.by_stage() == Counter({"worker": 4, "sink": 4})
    assert count.total == 8


def test_a_process_dying_in_the_middle_of_its_answer_is_skipped() -> None:
    """A service that exits while it answers: headers promise a body that never comes."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_half() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 15545\r\n\r\n# HELP partial")
        conn.close()

    thread = threading.Thread(target=answer_half, daemon=True)
    thread.start()
    count = RebalanceCount()
    try:
        count.scrape("worker-2", 1, port)
    finally:
        thread.join(5)
        server.close()
    assert count.total == 0
