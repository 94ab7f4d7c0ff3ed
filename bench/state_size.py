"""What the worker's state costs with many distinct devices: changelog bytes, restore time, memory.

    .venv/bin/python -m bench.state_size --devices 1000000

1. Runs the bench workload (``workload.py``: the simulator's journeys, real user agents) through a
   ``WorkerCore`` and keeps the device records it writes: real records, signed-in devices with their
   identity timeline, visits open and closed.
2. Writes ``--devices`` records to a fresh compacted changelog topic (2 partitions, lz4, as the
   runtime's producer would), cycling through those real records under new device ids; a share
   ``--open`` of them hold an open visit (a million devices seen in 30 days, of which those active
   in the last half hour), the others' visits closed.
3. In child processes (so each peak RSS is the state's alone), an assignment as the runtime does it
   (``restore_store``, then ``WorkerCore.load``) with each store: ``memory`` (the whole changelog
   into memory); ``disk, first start`` (the whole changelog into a fresh SQLite file); ``disk,
   restart`` (the same file again: only the changelog's tail, here empty). Reports seconds (restore,
   then load) and peak RSS, against the same child's RSS before.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
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


def sample_records(events: int) -> tuple[list[bytes], list[bytes]]:
    """Device records as the worker writes them after the workload's events (a few thousand): those
    holding an open visit, and all of them with their visit closed."""
    core = WorkerCore(Settings())
    messages = load_workload(events).messages
    batch = [Incoming("raw", 0, i, key, value) for i, (key, value) in enumerate(messages)]
    records: dict[bytes, bytes] = {}
    for start in range(0, len(batch), 2000):
        result = core.process(batch[start : start + 2000], datetime.now(UTC))
        records.update({key: value for key, (_, value) in result.devices.items()})
    devices = [Device.from_bytes(value) for value in records.values()]
    opened = [d.to_bytes() for d in devices if d.session is not None and d.session.current is not None]
    for device in devices:
        if device.session is not None:
            device.session.current = None
    return opened, [d.to_bytes() for d in devices]


def write_changelog(bootstrap: str, topic: str, devices: int, samples: tuple[list[bytes], list[bytes]],
                    open_share: float) -> int:  # fmt: skip
    ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS, {"cleanup.policy": "compact"})])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "enable.idempotence": True})  # fmt: skip
    written = 0
    opened, closed = samples
    every = max(1, round(1 / open_share)) if open_share > 0 else 0
    for i in range(devices):
        pool = opened if every and i % every == 0 else closed
        device = Device.from_bytes(pool[i % len(pool)])
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


def restore(bootstrap: str, topic: str, mode: str, state_dir: str) -> dict[str, float]:
    """The child's work: the runtime's restore into the mode's store, then the core's load."""
    from pipeline.runtime.kafka import changelog_source, restore_store
    from pipeline.runtime.store import DiskStore, StateFiles, StateStore

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before_now = rss_now_mb()
    started = time.perf_counter()
    store: StateStore | DiskStore = (
        StateFiles(Path(state_dir)).store("devices") if mode != "memory" else StateStore()
    )
    restore_store(bootstrap, topic, changelog_source(bootstrap, topic), store, range(PARTITIONS))
    read = time.perf_counter()
    core = WorkerCore(Settings())
    core.load(store, [], set(range(PARTITIONS)))
    loaded = time.perf_counter()
    return {
        "devices": len(core.devices),
        "decoded": len(core.devices.live),
        "restore_s": round(read - started, 1),
        "load_s": round(loaded - read, 1),
        "rss_before_mb": round(before),
        "rss_before_now_mb": round(before_now, 1),
        "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_mb": round(rss_now_mb(), 1),
    }


def rss_now_mb() -> float:
    """The resident set now (the peak also holds what imports used and gave back)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000, help="workload events for the sample records")
    parser.add_argument("--open", type=float, default=0.01, help="share of devices holding an open visit")
    parser.add_argument("--bootstrap", help="an existing broker; default: start one on free ports")
    parser.add_argument("--restore-only", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore_only:
        print(json.dumps(restore(*args.restore_only)))
        return 0
    samples = sample_records(args.events)
    closed = samples[1]
    print(f"{len(closed)} real device records ({len(samples[0])} with an open visit), "
          f"{sum(map(len, closed)) / len(closed):.0f} bytes on average")  # fmt: skip
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        topic = f"bench-state-{uuid.uuid4().hex[:8]}-devices-changelog"
        started = time.perf_counter()
        written = write_changelog(bootstrap, topic, args.devices, samples, args.open)
        seconds = time.perf_counter() - started
        print(f"wrote {args.devices:,} records ({written / 1e6:.0f} MB) in {seconds:.0f} s")
        with tempfile.TemporaryDirectory() as state_dir:
            for mode in ("memory", "disk, first start", "disk, restart"):
                command = ["-m", "bench.state_size", "--restore-only", bootstrap, topic, mode, state_dir]
                child = subprocess.run(
                    [sys.executable, *command],
                    capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                )  # fmt: skip
                figures = json.loads(child.stdout.strip().splitlines()[-1])
                figures["changelog_mb"] = round(written / 1e6)
                figures["state_file_mb"] = round(
                    sum(f.stat().st_size for f in Path(state_dir).glob("*")) / 1e6
                )
                print(json.dumps({"store": mode, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
