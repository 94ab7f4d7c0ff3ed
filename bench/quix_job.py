"""The quixstreams contender: 30-minute session windows counting events per device.

Runs in its own virtualenv (compare.py makes it under .webhouse/bench/: quixstreams pins an
older confluent-kafka than the project), so it imports nothing of the project:

    python bench/quix_job.py BOOTSTRAP TOPIC EVENTS STATE_DIR

The job: decode the Avro event, take event time from its ``timestamp``, session windows of
30 minutes by message key (the device), count, emit closed sessions to an output topic, state
in quixstreams' RocksDB store with its changelog topics (the defaults). Stops itself after
EVENTS input events and prints one JSON object like floor_consumer.py.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastavro
from quixstreams import Application
from quixstreams.models.serializers import Deserializer

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "customer_event.avsc"
HEADER = 10


class SingleObjectAvro(Deserializer):
    def __init__(self) -> None:
        super().__init__()
        self.schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))

    def __call__(self, value: bytes, ctx: Any) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(value[HEADER:]), self.schema, None)


def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    moment = value.get("timestamp") or value.get("received_at")
    return int(moment.timestamp() * 1000) if moment is not None else timestamp


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(bootstrap: str, topic: str, events: int, state_dir: str) -> None:
    app = Application(broker_address=bootstrap, consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=state_dir, loglevel="WARNING")  # fmt: skip
    source = app.topic(topic, key_deserializer="str", value_deserializer=SingleObjectAvro(),
                       timestamp_extractor=event_time)  # fmt: skip
    sink = app.topic(f"{topic}.quix-sessions", value_serializer="json")
    seen = [0]
    marks: dict[str, tuple[float, float]] = {}

    def count(value: Any) -> None:
        if not seen[0]:
            marks["first"] = (time.perf_counter(), time.process_time())
        seen[0] += 1
        if seen[0] == events:
            marks["last"] = (time.perf_counter(), time.process_time())
            app.stop()

    sdf = app.dataframe(source)
    sdf = sdf.update(count)
    sdf = sdf.session_window(timedelta(minutes=30)).count().final()
    sdf = sdf.to_topic(sink)
    app.run()
    if "last" not in marks:
        raise SystemExit(f"stopped after {seen[0]} of {events} events")
    (t0, c0), (t1, c1) = marks["first"], marks["last"]
    print(json.dumps({"events": seen[0], "seconds": t1 - t0, "cpu_s": c1 - c0, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
