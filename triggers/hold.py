"""Inputs of the evaluate stage wait here until the partition's clock has passed them.

A customer's inputs reach its triggers partition from several upstream partitions and topics in
no common order. Applied as they come, the profile versions and the alerts that read a profile
would follow that order. Held until the clock guarantees that nothing older can still come, and
then applied in a fixed order (time, kind, key, id), they give the same states and outputs
whatever the interleaving: this is what makes a replay, a restart or a second run equal.

Each input has a time the clock can vouch for (``Held.at``):
- an event: its event time (the worker sends it on at arrival; its watermark passes it later);
- a closed visit: its end plus the inactivity gap (its boundary; no visit closes later);
- a hand-over or an absorbed device state: the link's event time.

And a class: **device** inputs (an anonymous device's own events and visits, and hand-overs)
wait for the partition's clock over the upstream partitions only; **customer** inputs also wait
for every triggers partition to report how far it has handed device states on (the ``triggers/N``
sources), since an absorbed device or a forwarded input comes through another partition. Device
inputs never wait on those reports, so the reports cannot wait on each other.

The held inputs live in the ``trigger-pending`` store (so a restart resumes with them), and in
two heaps per partition here, rebuilt from the store after an assignment.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

KIND_RANK = {"absorb": 0, "event": 1, "session": 2, "handover": 3}


@dataclass(frozen=True, slots=True, order=True)
class Held:
    at: int
    rank: int
    key: bytes
    ident: str
    device: bool
    envelope: bytes

    def store_key(self, partition: int) -> bytes:
        return b"%d|%020d|%d|%s|%s" % (partition, self.at, self.rank, self.key, self.ident.encode())

    def to_bytes(self) -> bytes:
        body = [self.at, self.rank, self.key.decode(), self.ident, self.device, self.envelope.decode()]
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Held:
        at, rank, key, ident, device, envelope = json.loads(value)
        return cls(int(at), int(rank), key.encode(), str(ident), bool(device), envelope.encode())


def held_of(key: bytes, envelope: bytes, kind: str, body: Mapping[str, Any], gap_ms: int) -> Held:
    """The time the clock vouches for, the order among equals and the class of one input."""
    name = key.decode()
    if kind == "event":
        at, ident = int(body["time"]), str(body["message_id"])
    elif kind == "session":
        at, ident = int(body["end"]) + gap_ms, str(body["session_id"])
    elif kind == "handover":
        at, ident = int(body.get("at") or 0), f"handover:{body['to']}"
    elif kind == "absorb":
        at, ident = int(body.get("at") or 0), f"absorb:{body['state']['customer_id']}"
    else:
        raise ValueError(f"unknown triggers input kind {kind!r}")
    device = kind == "handover" or (kind in ("event", "session") and body.get("anonymous_id") == name)
    return Held(max(at, 0), KIND_RANK[kind], key, ident, device, envelope)


class HeldInputs:
    """Per owned partition, the held inputs of each class in release order."""

    def __init__(self) -> None:
        self._heaps: dict[tuple[int, bool], list[Held]] = {}

    def reset(self, partitions: Iterable[int], stored: Mapping[bytes, bytes]) -> None:
        owned = frozenset(partitions)
        self._heaps = {}
        for store_key, value in stored.items():
            partition = int(store_key.split(b"|", 1)[0])
            if partition in owned:
                held = Held.from_bytes(value)
                self._heaps.setdefault((partition, held.device), []).append(held)
        for heap in self._heaps.values():
            heapq.heapify(heap)

    def add(self, partition: int, held: Held) -> None:
        heapq.heappush(self._heaps.setdefault((partition, held.device), []), held)

    def release(self, partition: int, device: bool, before: int | None) -> Iterator[Held]:
        """The held inputs of one class with ``at`` < ``before``, in order, taken out as they go."""
        heap = self._heaps.get((partition, device))
        if before is None or not heap:
            return
        while heap and heap[0].at < before:
            yield heapq.heappop(heap)

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
