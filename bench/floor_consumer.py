"""The floor: a confluent-kafka consumer and a fastavro decode per event, nothing else.

Run by compare.py as a child process, so its CPU and peak RSS are its own:

    python bench/floor_consumer.py BOOTSTRAP TOPIC EVENTS

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
from pathlib import Path

import fastavro
from confluent_kafka import Consumer

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "customer_event.avsc"
HEADER = 10  # single-object encoding: 2 magic bytes + 8 fingerprint bytes


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(bootstrap: str, topic: str, events: int) -> None:
    schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
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
                fastavro.schemaless_reader(io.BytesIO(message.value()[HEADER:]), schema, None)
                seen += 1
        seconds, cpu = time.perf_counter() - first[0], time.process_time() - first[1]
    finally:
        consumer.close()
    print(json.dumps({"events": seen, "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
