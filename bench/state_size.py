"""What the worker's state costs with many distinct devices: changelog bytes, restore time, memory.

    .venv/bin/python bench/state_size.py --devices 1000000

1. Runs the bench workload (``workload.py``: the simulator's journeys, real user agents) through a
   ``WorkerCore`` and keeps the device records it writes: real records, open visits and closed
   ones, signed-in devices with their identity timeline.
2. Writes ``--devices`` records to a fresh compacted changelog topic (2 partitions, lz4, as the
   runtime's producer would), cycling through those real records under new device ids.
3. In a child process (so its peak RSS is the state's alone): restores the changelog as the runtime
   does on an assignment (``read_changelog`` into a ``StateStore``), then ``WorkerCore.load``;
   reports restore seconds (read, then load) and peak RSS, against the same child's RSS before.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from bench.workload import load as load_workload
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import broker_or_ephemeral
from pipeline.runtime.messages import Incoming
from pipeline.settings import Settings
from pipeline.topics import TopicSpec
from processors.worker.core import WorkerCore
from processors.worker.devices import Device

PARTITIONS = 2


def sample_records(events: int) -> list[bytes]:
    """Device records as the worker writes them after the workload's events (a few thousand)."""
    core = WorkerCore(Settings())
    messages = load_workload(events).messages
    batch = [Incoming("raw", 0, i, key, value) for i, (key, value) in enumerate(messages)]
    records: dict[bytes, bytes] = {}
    for start in range(0, len(batch), 2000):
        result = core.process(batch[start : start + 2000], datetime.now(UTC))
        records.update({key: value for key, (_, value) in result.devices.items()})
    return list(records.values())


def write_changelog(bootstrap: str, topic: str, devices: int, samples: list[bytes]) -> int:
    ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS, {"cleanup.policy": "compact"})])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "enable.idempotence": True})  # fmt: skip
    written = 0
    for i in range(devices):
        device = Device.from_bytes(samples[i % len(samples)])
        device.partition = i % PARTITIONS
        value = device.to_bytes()
        written += len(value)
        while True:
            try:
                producer.produce(topic, value, key=f"bench-device-{i}".encode(), partition=device.partition)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(300)
    return written


def restore(bootstrap: str, topic: str) -> dict[str, float]:
    """The child's work: the runtime's restore, then the core's load."""
    from pipeline.runtime.kafka import read_changelog
    from pipeline.runtime.store import StateStore

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    store = StateStore()
    for partition, key, value in read_changelog(bootstrap, topic, dict.fromkeys(range(PARTITIONS), 0)):
        store.put(partition, key, value)
    read = time.perf_counter()
    core = WorkerCore(Settings())
    core.load(store, [], set(range(PARTITIONS)))
    loaded = time.perf_counter()
    return {
        "devices": len(core.devices),
        "read_s": round(read - started, 1),
        "load_s": round(loaded - read, 1),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000, help="workload events for the sample records")
    parser.add_argument("--bootstrap", help="an existing broker; default: start one on free ports")
    parser.add_argument("--restore-only", nargs=2, metavar=("BOOTSTRAP", "TOPIC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore_only:
        print(json.dumps(restore(*args.restore_only)))
        return 0
    samples = sample_records(args.events)
    print(f"{len(samples)} real device records, {sum(map(len, samples)) / len(samples):.0f} bytes on average")
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        topic = f"bench-state-{uuid.uuid4().hex[:8]}-devices-changelog"
        started = time.perf_counter()
        written = write_changelog(bootstrap, topic, args.devices, samples)
        seconds = time.perf_counter() - started
        print(f"wrote {args.devices:,} records ({written / 1e6:.0f} MB) in {seconds:.0f} s")
        child = subprocess.run(
            [sys.executable, "-m", "bench.state_size", "--restore-only", bootstrap, topic],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        figures["changelog_mb"] = round(written / 1e6)
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
