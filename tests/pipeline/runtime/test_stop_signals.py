"""The runtime host's services (`webhouse worker`, `webhouse triggers run`): SIGTERM and SIGINT stop
them within the bound even when the broker does not answer, as the sink's and the collector's
tests prove for theirs (tests/sinks/test_sink_liveness.py, tests/pipeline/collector/).

Each runs as a child process against a broker of its own, which the test pauses (SIGSTOP) once
every stage owns its partitions: leaving the group, the commits and the producers' flushes then
wait on a broker that never answers, and only the stop's deadline can end them.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pipeline.health import EXIT_STOP_TIMEOUT
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka, free_port
from pipeline.topics import Topics
from tests.liveness import STOP_BOUND_S, get, start_service, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.parametrize("command", [["worker"], ["triggers", "run"]], ids=["worker", "triggers"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_within_the_bound_even_with_the_broker_paused(
    own_broker: LocalKafka, tmp_path: Path, command: list[str], signum: signal.Signals
) -> None:
    prefix = "stop"
    ensure_topics(own_broker.bootstrap, Topics(prefix=prefix, partitions=2).specs())
    port = free_port()
    env = {
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_WORKER__DATA_DIR": str(tmp_path / "worker"),
        "WEBHOUSE_METRICS__PORT": str(port),
    }
    log = tmp_path / f"{command[0]}.log"
    service = start_service(command, env, log)
    try:
        wait_for("ready (every stage assigned)", lambda: get(port, "/health/ready")[0] == 200, 90)
        pid = own_broker.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # a broker that does not answer: nothing can leave or commit
        service.send_signal(signum)
        code = service.wait(timeout=STOP_BOUND_S)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(timeout=10)
    # Stopped cleanly, or by the stop deadline, never hung.
    assert code in (0, EXIT_STOP_TIMEOUT), log.read_text()[-3000:]
