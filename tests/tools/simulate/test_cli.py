"""`webhouse simulate` as a user runs it: dry run to files, and a real send to a loopback server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tools.cli import main

NOW = "2026-11-23T12:00:00Z"


def test_dry_run_writes_truth_and_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--dry-run", "--customers", "60", "--seed", "5", "--now", NOW, "--malformed", "10"]
    assert main([*args, "--truth", str(tmp_path / "a.json"), "--dump-events", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--truth", str(tmp_path / "b.json"), "--dump-events", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    truth = json.loads((tmp_path / "a.json").read_text())
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert truth["events_total"] == len(lines)
    assert sum(truth["malformed_by_kind"].values()) == 10
    assert truth["now_at"] == "2026-11-23T12:00:00.000Z"
    assert "generated" in capsys.readouterr().out


def test_events_with_duration_and_rate_sizes_the_run(tmp_path: Path) -> None:
    truth_path = tmp_path / "t.json"
    argv = [
        "simulate",
        "--dry-run",
        "--rate",
        "100",
        "--duration",
        "20",
        "--now",
        NOW,
        "--truth",
        str(truth_path),
    ]
    assert main(argv) == 0
    truth = json.loads(truth_path.read_text())
    assert 2000 <= truth["events_total"] < 2000 + 500  # the last customer is kept whole


@pytest.fixture
def collector_stub() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    state: dict[str, object] = {}

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        received.extend(body["batch"])
        return web.json_response({"success": True, "accepted": len(body["batch"]), "rejected": 0})

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/v1/batch", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["runner"], state["port"] = runner, runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{state['port']}", received
    runner = state["runner"]
    assert isinstance(runner, web.AppRunner)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_sends_every_event_to_the_collector(
    tmp_path: Path, collector_stub: tuple[str, list[dict[str, object]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, received = collector_stub
    argv = [
        "simulate",
        "--customers",
        "30",
        "--now",
        NOW,
        "--rate",
        "0",
        "--url",
        url,
        "--truth",
        str(tmp_path / "t.json"),
        "--dump-events",
        str(tmp_path / "e.jsonl"),
    ]
    assert main(argv) == 0
    sent = [json.loads(line)["messageId"] for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [m["messageId"] for m in received] == sent
    assert all("sentAt" in m for m in received)
    assert "collector accepted" in capsys.readouterr().out
