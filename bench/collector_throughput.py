"""How many events per second one collector process turns into acknowledged Kafka records.

Starts its own broker (free loopback ports, data under a temp dir) unless --bootstrap is
given, runs the collector in-process on a free port, and posts Segment batches from a few
client processes over keep-alive connections. Reports events/s and request latency
percentiles, then the same load against its floor: a bare aiohttp handler that only parses
the JSON (``BareServer``). Not a test: numbers depend on the machine. compare.py reuses
``measure_collector`` and ``measure_bare``.

    .venv/bin/python bench/collector_throughput.py --batches 400 --batch-size 100 --clients 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from pipeline.collector.server import ThreadedCollector
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import broker_or_ephemeral
from pipeline.settings import CollectorSettings, KafkaSettings, Settings
from pipeline.topics import Topics


def batch(size: int, visitor: int) -> dict[str, Any]:
    events = []
    for i in range(size):
        events.append(
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": f"anon-{visitor}-{i % 7}",
                "messageId": uuid.uuid4().hex,
                "timestamp": "2026-11-23T10:00:00.000Z",
                "properties": {"product_id": f"p-{i}", "price": 12.5, "category": "mugs", "colour": "blue"},
                "context": {
                    "page": {"url": "https://shop.example/p/1", "path": "/p/1", "title": "Mug"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "ip": "203.0.113.9",
                    "library": {"name": "analytics.js", "version": "5.0"},
                },
            }
        )
    return {"batch": events}


def client(url: str, n: int, count: int, batch_size: int) -> list[float]:
    # Encoded once: the client's own JSON work must not be what limits the server's figure.
    bodies = [json.dumps(batch(batch_size, n * 100 + v)).encode() for v in range(8)]
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        response = session.post(
            url, data=bodies[i % len(bodies)], headers=headers, auth=("bench", ""), timeout=30
        )
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


@dataclass(frozen=True, slots=True)
class Load:
    """What one measurement posted and how it went: events/s and request latency percentiles."""

    events: int
    seconds: float
    latencies: list[float]
    cpu_s: float  # this process's CPU meanwhile: the server's, since clients run in processes of their own

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def percentile_ms(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000


def post_load(
    url: str | list[str],
    batches: int,
    batch_size: int,
    clients: int,
    cpu: Callable[[], float] = time.process_time,
) -> Load:
    """``batches`` Segment batches from ``clients`` client processes against a server in this process
    (or, given several URLs, client n posting to ``url[n % len(url)]`` and ``cpu`` the servers' CPU)."""
    urls = [url] if isinstance(url, str) else url
    for u in urls:
        requests.post(u, json=batch(batch_size, 0), auth=("bench", ""), timeout=30)  # warm-up
    per_client = batches // clients
    # Clients in processes of their own: in-process threads would share the server's GIL.
    with ProcessPoolExecutor(clients, mp_context=get_context("spawn")) as pool:
        for ready in [pool.submit(time.sleep, 0.3) for _ in range(clients)]:
            ready.result()  # the pool's processes are up (imports done) before the clock starts
        started, cpu_s = time.perf_counter(), cpu()
        jobs = [pool.submit(client, urls[n % len(urls)], n, per_client, batch_size) for n in range(clients)]
        latencies = [x for job in jobs for x in job.result()]
        wall, cpu_s = time.perf_counter() - started, cpu() - cpu_s
    return Load(per_client * clients * batch_size, wall, latencies, cpu_s)


def collector_settings(bootstrap: str) -> Settings:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, Topics.from_settings(kafka).specs())
    return Settings(kafka=kafka, collector=CollectorSettings(port=0, write_keys={"bench": "bench"}))


def measure_collector(bootstrap: str, batches: int, batch_size: int, clients: int) -> tuple[Load, float]:
    """The collector under load; also the mean time a request waited for the broker's acks (s)."""
    with ThreadedCollector(collector_settings(bootstrap)) as collector:
        load = post_load(f"{collector.url}/v1/batch", batches, batch_size, clients)
        registry = collector.metrics.registry
        produce_sum = registry.get_sample_value("webhouse_collector_produce_seconds_sum") or 0.0
        produce_count = registry.get_sample_value("webhouse_collector_produce_seconds_count") or 1.0
    return load, produce_sum / produce_count


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the collector's N processes)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0.0
    for one in (pid, *map(int, children)):
        with contextlib.suppress(OSError):  # gone since pgrep listed it
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure_collector_processes(
    bootstrap: str, processes: int, batches: int, batch_size: int, clients: int
) -> Load:
    """``webhouse collector --processes N`` (one port, SO_REUSEPORT) under the same load; ``cpu_s``
    is the CPU of all its processes. A keep-alive client stays with the process the kernel gave
    its connection, so with few clients the processes may be loaded unevenly."""
    prefix = collector_settings(bootstrap).kafka.topic_prefix
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_COLLECTOR__WRITE_KEYS": json.dumps({"bench": "bench"}),
    }
    cmd = [sys.executable, "-m", "tools.cli", "collector", "--port", "0", "--processes", str(processes)]
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()  # "webhouse collector listening on http://... with N processes"
            if "listening on " not in line:
                raise RuntimeError(f"the collector did not start: {line!r}")
            url = line.split("listening on ")[1].split()[0]
            return post_load(f"{url}/v1/batch", batches, batch_size, clients, lambda: _tree_cpu_s(server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


class BareServer:
    """The collector's floor: an aiohttp handler that parses the JSON body and answers 200, nothing else."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bare-http", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    @staticmethod
    async def _handle(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({"success": True})

    async def _start(self) -> str:
        app = web.Application(client_max_size=2**22)
        app.router.add_post("/v1/batch", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BareServer:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def measure_bare(batches: int, batch_size: int, clients: int) -> Load:
    with BareServer() as server:
        return post_load(f"{server.url}/v1/batch", batches, batch_size, clients)


def run(bootstrap: str, args: argparse.Namespace) -> None:
    if args.processes > 1:
        load = measure_collector_processes(
            bootstrap, args.processes, args.batches, args.batch_size, args.clients
        )
        cpu_us = load.cpu_s / load.events * 1e6
        print(f"{args.processes} collector processes: {load.events_per_s:,.0f} events/s, "
              f"p99 {load.percentile_ms(99):.1f} ms, {cpu_us:.0f} us CPU per event")  # fmt: skip
    load, ack_wait = measure_collector(bootstrap, args.batches, args.batch_size, args.clients)
    print(f"{load.events} events in batches of {args.batch_size}, {args.clients} clients")
    print(f"throughput: {load.events_per_s:,.0f} events/s ({load.seconds:.1f} s)")
    print(f"request latency: p50 {load.percentile_ms(50):.1f} ms, p99 {load.percentile_ms(99):.1f} ms")
    print(f"of which waiting for broker acks: mean {ack_wait * 1000:.1f} ms per request")
    bare = measure_bare(args.batches, args.batch_size, args.clients)
    print(f"floor (bare aiohttp handler, JSON parse only): {bare.events_per_s:,.0f} events/s, "
          f"p99 {bare.percentile_ms(99):.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker; default: start one")
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1, help="also measure this many collector processes")
    args = parser.parse_args()
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        run(bootstrap, args)


if __name__ == "__main__":
    main()
