"""A Segment server library as apps' back ends use it: background batching, gzip bodies, and
retries when the collector answers 503 (Kafka unavailable), including a lost answer."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from aiohttp import web
from segment.analytics.client import Client

from pipeline.collector.server import ThreadedCollector
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records

pytestmark = pytest.mark.kafka


def test_batches_gzip_and_retries_after_503(kafka_settings: KafkaSettings) -> None:
    seen: list[dict[str, str]] = []
    plan = ["kafka_down", "answer_lost"]  # what happens to the first two requests
    lock = threading.Lock()

    @web.middleware
    async def flaky(request: web.Request, handler: Any) -> web.StreamResponse:
        with lock:
            seen.append(
                {
                    "path": request.path,
                    "encoding": request.headers.get("Content-Encoding", ""),
                }
            )
            fault = plan.pop(0) if plan else None
        if fault == "kafka_down":  # what the collector answers when the broker does not ack
            return web.json_response({"code": "kafka_unavailable"}, status=503, headers={"Retry-After": "1"})
        response = await handler(request)
        if fault == "answer_lost":  # produced and acked, but the client never hears it
            return web.json_response({"code": "kafka_unavailable"}, status=503, headers={"Retry-After": "1"})
        return response

    collector = ThreadedCollector(collector_settings(kafka_settings, retry_after_s=1))
    collector.server.app.middlewares.append(flaky)
    with collector:
        client = Client(WRITE_KEY, host=collector.url, gzip=True, upload_size=5, max_retries=5)
        try:
            for i in range(12):
                client.track(
                    f"cust-{i % 3}",
                    "Product Viewed",
                    {"product_id": f"p-{i}", "price": 10 + i},
                    message_id=f"m-{i:02d}",
                )
            client.flush()
        finally:
            client.shutdown()

    assert all(r["path"] == "/v1/batch" and r["encoding"] == "gzip" for r in seen)
    assert len(seen) >= 3 + 2  # 12 events in batches of at most 5, plus the two retries
    # A 503 with Retry-After is a rate limit to this library: it waits, then re-queues the events.

    records = read_records(
        kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 12
    )
    ids = [r["message_id"] for r in records]
    assert set(ids) == {f"m-{i:02d}" for i in range(12)}
    duplicated = {i for i in ids if ids.count(i) > 1}
    # The batch whose answer was lost landed twice, under the same ids: the processors drop the copy.
    assert 1 <= len(duplicated) <= 5
    assert len(ids) == 12 + len(duplicated)
    for record in records:
        i = int(record["message_id"][2:])
        assert record["user_id"] == f"cust-{i % 3}"
        assert record["commerce"]["products"][0]["price"] == 10 + i
        assert record["context"]["library"]["name"] == "analytics-python"
