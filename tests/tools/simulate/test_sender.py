"""The sender against a tiny collector stand-in on loopback that records what it receives."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from pipeline.errors import SimulationError
from tools.simulate import Simulation
from tools.simulate.sender import SendPolicy, SendReport, plan_batches, send_events


@dataclass
class Recorder:
    """Answers 503 (Retry-After 0) to the first ``fail_first`` requests, then 200."""

    fail_first: int = 0
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()  # aiohttp inflates a gzip body itself (and refuses a bad one)
        self.encodings.append(request.headers.get("Content-Encoding", "identity"))
        self.auth.append(request.headers.get("Authorization", ""))
        body = json.loads(raw)
        self.requests.append(body)
        if len(self.requests) <= self.fail_first:
            return web.json_response({"code": "kafka_unavailable"}, status=503, headers={"Retry-After": "0"})
        if self.status != 200:
            return web.json_response({"code": "nope"}, status=self.status)
        bad = sum(1 for e in body["batch"] if e.get("type") == "teleport")
        return web.json_response({"success": True, "accepted": len(body["batch"]) - bad, "rejected": bad})


async def _with_server(recorder: Recorder, run: Callable[[str], Awaitable[SendReport]]) -> SendReport:
    app = web.Application()
    app.router.add_post("/v1/batch", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await run(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def _send(sim: Simulation, recorder: Recorder, **policy: Any) -> SendReport:
    events = sim.events[:1500]

    async def run(url: str) -> SendReport:
        return await send_events(events, SendPolicy(url=url, write_key="test-key", **policy))

    return asyncio.run(_with_server(recorder, run))


def _received(recorder: Recorder, accepted_only: bool = True) -> list[dict[str, Any]]:
    return [e for r in recorder.requests for e in r["batch"]]


def test_batches_arrive_in_stream_order_with_basic_auth_and_sent_at(small_sim: Simulation) -> None:
    recorder = Recorder()
    report = _send(small_sim, recorder, batch_size=64, gzip=True)
    expected = [e.body["messageId"] for e in small_sim.events[:1500]]
    assert [e["messageId"] for e in _received(recorder)] == expected
    assert all(len(r["batch"]) <= 64 for r in recorder.requests)
    assert len(recorder.requests) == -(-1500 // 64)
    assert set(recorder.encodings) == {"gzip"}
    assert set(recorder.auth) == {"Basic " + base64.b64encode(b"test-key:").decode()}
    assert all(e["sentAt"] == r["sentAt"] for r in recorder.requests for e in r["batch"])
    assert report.events == report.accepted + report.refused == 1500
    assert report.retries == 0 and report.statuses == {200: len(recorder.requests)}


def test_503_with_retry_after_is_retried_with_the_same_messages(small_sim: Simulation) -> None:
    recorder = Recorder(fail_first=3)
    report = _send(small_sim, recorder, batch_size=500)
    assert report.retries == 3 and report.statuses[503] == 3
    first_ids = [e["messageId"] for e in recorder.requests[0]["batch"]]
    assert all([e["messageId"] for e in r["batch"]] == first_ids for r in recorder.requests[:4])
    delivered = [e["messageId"] for r in recorder.requests[3:] for e in r["batch"]]
    assert delivered == [e.body["messageId"] for e in small_sim.events[:1500]]


def test_giving_up_after_the_retries_raises(small_sim: Simulation) -> None:
    with pytest.raises(SimulationError, match="after 3 tries"):
        _send(small_sim, Recorder(fail_first=100), batch_size=500, max_retries=2)


def test_a_refused_write_key_stops_the_run(small_sim: Simulation) -> None:
    with pytest.raises(SimulationError, match="write key"):
        _send(small_sim, Recorder(status=401))


def test_lanes_keep_each_actors_order(small_sim: Simulation) -> None:
    recorder = Recorder()
    report = _send(small_sim, recorder, batch_size=50, concurrency=4)
    assert report.events == 1500
    order: dict[str, list[str]] = defaultdict(list)
    for event in small_sim.events[:1500]:
        order[event.key].append(event.body["messageId"])
    key_of = {e.body["messageId"]: e.key for e in small_sim.events[:1500]}
    seen: dict[str, list[str]] = defaultdict(list)
    for message in _received(recorder):
        seen[key_of[message["messageId"]]].append(message["messageId"])
    assert seen == order


def test_plan_respects_count_and_size_limits(small_sim: Simulation) -> None:
    policy = SendPolicy(url="http://x", write_key="k", batch_size=80, max_batch_bytes=20_000)
    batches = plan_batches(small_sim.events, policy)
    assert [e for b in batches for e in b.events] == list(small_sim.events)
    for batch in batches:
        assert len(batch.events) <= 80
        body = {
            "batch": [{**e.body, "sentAt": "2026-11-23T12:00:00.000Z"} for e in batch.events],
            "sentAt": "x",
        }
        assert len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()) <= 20_000
        assert batch.last - batch.first + 1 == len(batch.events)


def test_sent_at_can_be_left_out(small_sim: Simulation) -> None:
    recorder = Recorder()
    _send(small_sim, recorder, batch_size=500, sent_at=False)
    assert not any("sentAt" in r for r in recorder.requests)
    assert not any("sentAt" in e for e in _received(recorder))
