"""What the worker writes to its changelogs per event while events wait for the watermark.

A steady stream like the freshness bench's (``--devices`` devices, each an event every
``1 / --rate`` seconds of event time, in arrival order, ``--batch`` events per batch, the default
300 s allowed lateness), through one ``WorkerCore``. Per event: the bytes of the ``devices`` and
``waiting`` store writes (keys and values, tombstones as their keys), and in the same pass what
the former layout wrote (each dirty device's record with its waiting events inline), so the two
are compared on the very same batches. The event bodies are the bench workload's real records
(``workload.py``) under new device ids and times. Not a test: numbers depend on the settings.

    .venv/bin/python -m bench.state_writes [--devices 500] [--rate 0.4] [--seconds 900] [--batch 100]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

from bench.workload import load as load_workload
from pipeline.runtime.messages import Incoming
from pipeline.serde import SingleObjectSerde
from pipeline.settings import Settings
from processors.worker.core import BatchResult, WorkerCore

START = datetime(2026, 11, 2, 9, tzinfo=UTC)


def stream(devices: int, rate: float, seconds: float, events: int) -> list[bytes]:
    """Raw events in arrival (event-time) order: device d's k-th event at (k + d / devices) / rate."""
    serde = SingleObjectSerde("customer_event")
    bodies = [serde.decode(v) for _, v in load_workload(events).messages]
    out: list[bytes] = []
    per_device = int(seconds * rate)
    for k in range(per_device):
        for d in range(devices):
            at = START + timedelta(seconds=(k + d / devices) / rate)
            body = dict(bodies[(k * devices + d) % len(bodies)])
            body.update(
                message_id=f"e-{d}-{k}", anonymous_id=f"bench-{d}", user_id=None, type="page",
                timestamp=at, sent_at=at, received_at=at,
            )  # fmt: skip
            out.append(serde.encode(body))
    return out


def former_bytes(core: WorkerCore, result: BatchResult) -> int:
    """The same batch's device writes as the former layout made them: waiting events inline."""
    total = 0
    for key in result.devices:
        device = core.devices.get(key.decode())
        if device is None or device.session is None:
            total += len(key) + len(result.devices[key][1])
            continue
        with_buffer = json.dumps(device.session.to_dict(with_buffer=True), separators=(",", ":"))
        without = json.dumps(device.session.to_dict(with_buffer=False), separators=(",", ":"))
        total += len(key) + len(result.devices[key][1]) + len(with_buffer) - len(without)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.4, help="events per second per device")
    parser.add_argument("--seconds", type=float, default=900.0, help="event time the stream spans")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    values = stream(args.devices, args.rate, args.seconds, 5_000)
    core = WorkerCore(Settings())
    now = datetime.now(UTC)
    devices = waiting = former = 0
    for start in range(0, len(values), args.batch):
        batch = [
            Incoming("raw", 0, start + i, None, v) for i, v in enumerate(values[start : start + args.batch])
        ]
        result = core.process(batch, now)
        devices += sum(len(k) + len(v) for k, (_, v) in result.devices.items())
        waiting += sum(len(k) + len(v or b"") for k, (_, v) in result.waiting.items())
        former += former_bytes(core, result)
    n = len(values)
    print(f"{n:,} events, {args.devices} devices at {args.rate}/s, batches of {args.batch}, 300 s lateness")
    total = (devices + waiting) / n
    print(f"  now:    devices {devices / n:,.0f} B + waiting {waiting / n:,.0f} B = {total:,.0f} B per event")
    print(f"  former: devices with waiting events inline {former / n:,.0f} B per event")
    print(f"  ratio former / now: {former / max(1, devices + waiting):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
