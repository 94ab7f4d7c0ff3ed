"""``--processes N`` refuses a port another program holds, before starting any process."""

from __future__ import annotations

import socket

import pytest

from pipeline.collector.processes import CollectorProcessError, run_processes
from pipeline.settings import CollectorSettings, Settings


def test_a_port_in_use_is_a_clear_error_and_nothing_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(collector=CollectorSettings(port=port, processes=2))
        announced: list[str] = []
        with pytest.raises(CollectorProcessError, match=f"cannot bind 127.0.0.1:{port}"):
            run_processes(settings, announce=announced.append)
        assert announced == []
