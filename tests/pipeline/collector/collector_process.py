"""`webhouse collector` started as its own process for the tests, on a free port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pipeline.settings import KafkaSettings

WRITE_KEY = "cli-key"


@contextmanager
def collector_process(
    kafka: KafkaSettings, *args: str, env: Mapping[str, str] | None = None, announces: str = ""
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The process and the URL it serves, once its "listening on" line (which must also hold
    ``announces``) came; killed at the end if still running. ``args`` go after ``--port 0``."""
    environment = {
        **os.environ,
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "WEBHOUSE_COLLECTOR__WRITE_KEYS": json.dumps({WRITE_KEY: "cli"}),
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "tools.cli", "collector", "--port", "0", *args]
    with subprocess.Popen(
        cmd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "webhouse collector listening on http://..."
            assert "listening on http://" in line and announces in line, line
            yield process, line.split("listening on ")[1].split()[0]
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)
