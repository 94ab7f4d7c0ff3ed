"""An S3-compatible store for the sink tests: moto's S3 server in a separate process (deltalake
holds the GIL during its I/O, so an in-process server would deadlock). moto honours
``If-None-Match: *`` on PUT, the conditional write every Delta commit on S3 relies on."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pipeline.kafka_local import free_port


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)
