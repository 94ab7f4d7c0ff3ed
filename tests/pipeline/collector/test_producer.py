"""The producer's loop-driven poller: if it dies, requests are refused with its reason at once
instead of each waiting out the produce timeout (no broker needed)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.collector.producer import AsyncProducer, OutgoingMessage
from pipeline.errors import ProduceError


class BrokenPoll:
    def poll(self, timeout: float) -> int:
        raise RuntimeError("a delivery callback raised")


def test_a_dead_poller_refuses_new_sends_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        producer = AsyncProducer({"bootstrap.servers": "127.0.0.1:9"}, timeout_s=5)
        producer.start()
        assert producer._poller is not None and producer._wake is not None
        producer._poller.cancel()  # the real one; a poller whose poll raises instead
        broken = asyncio.get_running_loop().create_task(producer._poll_loop(BrokenPoll(), producer._wake))  # type: ignore[arg-type]
        broken.add_done_callback(producer._poller_ended)
        producer._poller = broken
        with pytest.raises(RuntimeError):
            await broken
        with pytest.raises(ProduceError, match="poller stopped: RuntimeError"):
            await producer.send_all([OutgoingMessage("t", b"v")])
        producer._poller = None
        await producer.close(0.1)

    asyncio.run(scenario())
    assert "the producer's poller stopped" in caplog.text
