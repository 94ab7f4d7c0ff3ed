"""Per-event cost of the session logic alone (no Kafka, no Avro): the worker's budget check.

Simulates one partition: devices with a few visits each, events slightly out of order (within the
allowed lateness, a few beyond), and feeds them to ``PartitionSessionizer``. Reports events/s and
microseconds per event of CPU time of this process (a busy machine skews it less than wall time),
for ``process`` alone and with the device state serialised on every event, as a faust table with a
changelog would do it. Not a test: numbers depend on the machine.

    .venv/bin/python bench/sessions_throughput.py [--events 200000] [--devices 20000]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from processors.sessions import PartitionSessionizer, SessionEvent, SessionPolicy

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def make_events(count: int, devices: int, seed: int) -> list[SessionEvent]:
    rng = random.Random(seed)
    clock = {f"dev-{i}": T0 + timedelta(seconds=rng.uniform(0, 3600)) for i in range(devices)}
    names = list(clock)
    timed = []
    for index in range(count):
        device = rng.choice(names)
        step = rng.expovariate(1 / 60) if rng.random() < 0.9 else rng.uniform(1800, 7200)
        clock[device] += timedelta(seconds=step)
        when = clock[device]
        jitter = rng.uniform(0, 120) if rng.random() < 0.98 else rng.uniform(300, 900)
        event = SessionEvent(
            event_id=f"e-{index}",
            device_id=device,
            event_time=when,
            call_type="page",
            is_page_view=True,
            page=rng.choice(["/", "/shoes", "/cart", "/checkout"]),
            utm_source="news" if rng.random() < 0.05 else None,
            utm_medium="email",
            utm_campaign="n42",
            browser_family="Firefox",
            products_viewed=("p1",) if rng.random() < 0.3 else (),
        )
        timed.append((when + timedelta(seconds=jitter), index, event))
    timed.sort(key=lambda item: item[:2])
    return [event for _, _, event in timed]


def measure(
    events: list[SessionEvent], policy: SessionPolicy, serialise: bool
) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of this process, outputs, device states)."""
    sessionizer = PartitionSessionizer(policy)
    outputs = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for event in events:
        outputs += len(sessionizer.process(event))
        if serialise:
            sessionizer.states[event.device_id].to_bytes()
    outputs += len(sessionizer.flush())
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return wall, cpu, outputs, len(sessionizer.states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    policy = SessionPolicy(split_at_midnight=True, timezone="Europe/Berlin")
    built = time.perf_counter()
    events = make_events(args.events, args.devices, args.seed)
    print(f"built {len(events)} events for {args.devices} devices in {time.perf_counter() - built:.1f}s")
    for serialise in (False, True):
        wall, cpu, outputs, states = measure(events, policy, serialise)
        label = "process + state to_bytes" if serialise else "process only"
        print(
            f"{label:26s} {len(events) / cpu:9.0f} events/s per CPU second"
            f" ({cpu / len(events) * 1e6:5.2f} us CPU, {wall / len(events) * 1e6:5.2f} us wall per event;"
            f" {outputs} outputs, {states} device states)"
        )


if __name__ == "__main__":
    main()
