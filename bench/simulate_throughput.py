"""How fast `webhouse simulate` generates its default run and how fast the collector takes it.

Starts its own broker (free loopback ports, data under a temp dir) unless --bootstrap is
given, runs `webhouse collector` as a separate process (as the demo does, so sender and
collector do not share a GIL), generates the run and sends it unpaced (``--rate 0``).
Reports generation speed and sending throughput. Not a test: numbers depend on the machine.

    .venv/bin/python bench/simulate_throughput.py --customers 800 --concurrency 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import broker_or_ephemeral, free_port
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tools.simulate import SimulationConfig, generate
from tools.simulate.sender import SendPolicy, send_events

KEY = "bench-write-key"


def run(bootstrap: str, args: argparse.Namespace) -> None:
    prefix = f"simbench{uuid.uuid4().hex[:6]}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    ensure_topics(bootstrap, Topics.from_settings(kafka).specs())

    started = time.perf_counter()
    sim = generate(
        SimulationConfig(seed=args.seed, now=datetime.now(UTC), customers=args.customers, days=args.days)
    )
    gen_s = time.perf_counter() - started
    print(
        f"generated {len(sim.events)} events ({args.customers} customers, {args.days:g} days) "
        f"in {gen_s:.2f} s = {len(sim.events) / gen_s:,.0f} events/s"
    )

    port = free_port()
    env = {
        **os.environ,
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_COLLECTOR__WRITE_KEYS": f'{{"{KEY}": "bench"}}',
        "WEBHOUSE_LOG_LEVEL": "WARNING",
    }
    webhouse = str(Path(sys.executable).with_name("webhouse"))
    collector = subprocess.Popen([webhouse, "collector", "--port", str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("collector did not become ready")
            time.sleep(0.2)
        policy = SendPolicy(
            url=url,
            write_key=KEY,
            rate=0,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            gzip=args.gzip,
        )
        report = asyncio.run(send_events(sim.events, policy))
    finally:
        collector.terminate()
        collector.wait(30)
    print(
        f"sent {report.events} events in {report.elapsed_s:.1f} s = {report.rate:,.0f} events/s "
        f"(batches of {args.batch_size}, {args.concurrency} in flight, gzip {args.gzip}); "
        f"accepted {report.accepted}, refused {report.refused}, retries {report.retries}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker; default: start one")
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        run(bootstrap, args)


if __name__ == "__main__":
    main()
