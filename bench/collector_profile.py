"""Where the collector's time goes under the bench load: py-spy samples of the collector's own
process while collector_throughput.py's clients post Segment batches, summed into buckets.

    .venv/bin/python bench/collector_profile.py --batches 600 [--bootstrap HOST:PORT] [--raw out.txt]

The clients run in processes of their own (not sampled), so every sample is the server's: the
event loop thread (HTTP, JSON, validation, PII hashing, Avro, produce calls, delivery reports;
before the loop served those, a poll thread of their own). py-spy leaves idle threads out.
Buckets are matched from the innermost frame outwards, so a helper's time lands on the first
frame that names a piece of work.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import collector_throughput

from pipeline.kafka_local import broker_or_ephemeral

# (bucket, pattern on "function (file:line)"), tried in order on each frame, innermost first.
BUCKETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("waiting in select() (idle loop)", r"Selector\.select \(selectors|select \(selectors"),
        ("Avro encode", r"Serde\.encode|schemaless_writer|fastavro/|CavroCodec\.write"),
        ("PII pseudonymisation", r"collector/pseudonymise\.py|pipeline/pii\.py"),
        ("size check (canonical JSON)", r"check_size|canonical_json"),
        ("event shape and time checks", r"collector/limits\.py"),
        ("mapping and validation (segment, fields, coerce, semantic)",
         r"collector/(segment|fields|coerce|semantic)\.py"),
        ("request JSON parse", r"parse_json|orjson|json/decoder"),
        ("request parse (other)", r"collector/request\.py"),
        ("produce calls (queue into librdkafka)", r"AsyncProducer\.(send|_queue)|\.produce "),
        ("delivery reports (callbacks, polling)", r"_Acks\.delivered|_settle|_poll_loop|_delivered"),
        ("metrics (prometheus_client)", r"prometheus_client/"),
        ("response JSON", r"json_response|outcome_response|/json/encoder"),
        ("aiohttp (HTTP parse, write)", r"aiohttp/"),
        ("asyncio machinery", r"asyncio/"),
        ("collector (other)", r"collector/"),
    )
)  # fmt: skip


def bucket(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, pattern in BUCKETS:
            if pattern.search(frame):
                return name
    return "other"


def split(raw: str) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            counts[bucket(stack)] += int(count)
    return counts, sum(counts.values())


def table(counts: Counter[str], total: int) -> str:
    rows = ["| collector activity (innermost known frame) | share of samples |", "|---|---|"]
    rows += [f"| {name} | {n / total:.0%} |" for name, n in counts.most_common()]
    return "\n".join(rows)


def profile(bootstrap: str, args: argparse.Namespace, out: Path) -> collector_throughput.Load:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(os.getpid()), "--format", "raw", "--rate", "200"]
    spy = subprocess.Popen(
        [*command, "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the load starts
    try:
        size, clients = args.batch_size, args.clients
        load, _ = collector_throughput.measure_collector(bootstrap, args.batches, size, clients)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(60)
    return load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker; default: start one")
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    out = args.raw or Path(tempfile.mkdtemp(prefix="collector-profile-")) / "collector.pyspy.txt"
    with broker_or_ephemeral(args.bootstrap) as bootstrap:
        load = profile(bootstrap, args, out)
    print(f"{load.events_per_s:,.0f} events/s, p99 {load.percentile_ms(99):.0f} ms while sampled")
    counts, total = split(out.read_text())
    if not total:
        print(f"{out}: no samples", file=sys.stderr)
        return 1
    print(f"{total} samples ({out})")
    print(table(counts, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
