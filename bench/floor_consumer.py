"""The floor: a confluent-kafka consumer and a fastavro decode per event, nothing else.

Run by compare.py as a child process, so its CPU and peak RSS are its own:

    python bench/floor_consumer.py BOOTSTRAP TOPIC EVENTS [fastavro|cavro]

``cavro`` decodes with cavro instead, as the worker's serde does since 4 December 2026 (issue 11
defines the floor with fastavro; compare.py's ``floor-cavro`` is the stricter yardstick).

Reads the topic from the start in batches until EVENTS events are decoded; prints one JSON
object (events, seconds, cpu_s, peak_rss_mb) measured from the first event to the last.
No stream framework, no state, no output: what any consumer of the raw topic must pay.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import cavro
import fastavro
from confluent_kafka import Consumer

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "customer_event.avsc"
HEADER = 10  # single-object encoding: 2 magic bytes + 8 fingerprint bytes


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def decoder(name: str) -> Callable[[bytes], object]:
    raw = json.loads(SCHEMA.read_text())
    if name == "cavro":
        options = cavro.DEFAULT_OPTIONS.replace(record_decodes_to_dict=True)
        return cavro.Schema(raw, options=options).binary_decode
    schema = fastavro.parse_schema(raw)
    return lambda body: fastavro.schemaless_reader(io.BytesIO(body), schema, None)


def main(bootstrap: str, topic: str, events: int, decoder_name: str = "fastavro") -> None:
    decode = decoder(decoder_name)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"floor-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    seen = 0
    first = (0.0, 0.0)
    try:
        while seen < events:
            batch = consumer.consume(num_messages=1000, timeout=1.0)
            if batch and not seen:
                first = (time.perf_counter(), time.process_time())
            for message in batch:
                if message.error():
                    raise RuntimeError(f"consume error: {message.error()}")
                # A record (errors raised above); no cast() here: this loop is the floor being timed.
                decode(message.value()[HEADER:])  # type: ignore[index]
                seen += 1
        seconds, cpu = time.perf_counter() - first[0], time.process_time() - first[1]
    finally:
        consumer.close()
    print(json.dumps({"events": seen, "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
