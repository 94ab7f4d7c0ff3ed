"""A webhook receiver on loopback, in a thread: verifies signatures, can be told to fail first."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pipeline.errors import SignatureError
from triggers.webhook import ALERT_ID_HEADER, IDEMPOTENCY_KEY_HEADER, verify


@dataclass
class Received:
    alert_id: str
    body: dict[str, Any]
    verified: bool
    problem: str | None = None


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer this many requests with `fail_status` (or hang, for status 0)
    fail_status: int = 503
    hang_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    attempts: int = 0
    keys: list[str | None] = field(default_factory=list)  # Idempotency-Key of every attempt

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.keys.append(request.headers.get(IDEMPOTENCY_KEY_HEADER))
        if self.attempts <= self.fail_first:
            if self.fail_status == 0:
                await asyncio.sleep(self.hang_s)
                return web.Response(status=200)
            return web.Response(status=self.fail_status)
        body = await request.read()
        try:
            verify(self.secret, body, request.headers, time.time())
            verified, problem = True, None
        except SignatureError as exc:
            verified, problem = False, str(exc)
        self.requests.append(Received(request.headers[ALERT_ID_HEADER], json.loads(body), verified, problem))
        return web.Response(status=200 if verified else 401)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
