"""Seeded raw records for the sinks' crash tests: page views and orders on a few anonymous ids,
produced to the raw topic as the collector would, with what the tables must then hold."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from pipeline.serde import SingleObjectSerde
from tools.records import T0, event, order


@dataclass
class RawRecords:
    """Record ``i`` of chunk ``chunk`` is an order (one to three lines) when ``i`` is a multiple of
    ``order_every``, else a page view; both on one of ``anonymous_ids`` devices, at a random minute
    of three days. ``sent`` and ``expected_lines`` are what the ``events`` and ``orders`` tables
    must hold, once each, whatever was produced twice."""

    rnd: random.Random
    anonymous_ids: int
    order_every: int
    sent: list[dict[str, Any]] = field(default_factory=list)
    expected_lines: set[tuple[str, str, int]] = field(default_factory=set)

    def make(self, chunk: int, i: int) -> dict[str, Any]:
        mid, anon = f"m{chunk}-{i}", f"anon-{self.rnd.randrange(self.anonymous_ids)}"
        at = T0.replace(day=1 + self.rnd.randrange(3), minute=self.rnd.randrange(60))
        if i % self.order_every == 0:
            lines = [(f"p{j}", 2.5, 1 + j) for j in range(1 + self.rnd.randrange(3))]
            record = order(mid, f"o{chunk}-{i}", lines, anonymous_id=anon, at=at)
            self.expected_lines.update((f"o{chunk}-{i}", "completed", j + 1) for j in range(len(lines)))
        else:
            record = event(mid, type="page", name="Home", anonymous_id=anon, at=at, path="/")
        self.sent.append(record)
        return record


@dataclass
class RawTopic:
    """The raw topic as the collector writes it: Avro single-object encoded, keyed by the device."""

    producer: Producer
    topic: str
    serde: SingleObjectSerde = field(default_factory=lambda: SingleObjectSerde("customer_event"))

    def produce(self, record: dict[str, Any]) -> None:
        key = (record["anonymous_id"] or "").encode()
        self.producer.produce(self.topic, self.serde.encode(record, self.topic), key=key)
