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
two heaps per partition here, rebuilt from the store after an assignment. Customer inputs wait
for reports that come round the stage's own input topic, so in a catch-up they are held for as
long as the stage lags, and their number grows with that lag: past ``triggers.held_in_memory``
the heaps keep only what orders an input (``Held.slim``), and its body is read back from the
store when it is applied (``HeldInputs.slim``, ``envelope_of``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from pipeline import fast_json
from pipeline.errors import ProcessingError
from pipeline.serde import compact_json

KIND_RANK = {"absorb": 0, "event": 1, "session": 2, "handover": 3}


class Held(NamedTuple):
    """One held input. A tuple, so that the heaps compare them natively, field by field: an ordered
    dataclass's ``__lt__`` builds two tuples per comparison (measured: 2-5% of the evaluate stage)."""

    at: int
    rank: int
    key: bytes
    ident: str
    device: bool
    envelope: bytes

    @property
    def slimmed(self) -> bool:
        """Its body was dropped from memory: it is in the ``trigger-pending`` store."""
        return not self.envelope

    def slim(self) -> Held:
        """The same input without its body (an envelope is never empty: it is a JSON object)."""
        return Held(self.at, self.rank, self.key, self.ident, self.device, b"")

    def store_key(self, partition: int) -> bytes:
        return b"%d|%020d|%d|%s|%s" % (partition, self.at, self.rank, self.key, self.ident.encode())

    def to_bytes(self) -> bytes:
        """A JSON line of what orders the input, then its envelope as it came: the envelope is not
        escaped into a JSON string, and a read parses only the first line (compact JSON holds no
        raw newline, so the first one ends it)."""
        head = compact_json([self.at, self.rank, self.key.decode(), self.ident, self.device])
        return head + b"\n" + self.envelope

    @classmethod
    def from_bytes(cls, value: bytes) -> Held:
        head, newline, envelope = value.partition(b"\n")
        if newline:
            at, rank, key, ident, device = fast_json.loads(head)
        else:  # written before 3 December 2026: one JSON array, the envelope its last item, a string
            at, rank, key, ident, device, text = fast_json.loads(value)
            envelope = text.encode()
        return cls(int(at), int(rank), key.encode(), str(ident), bool(device), envelope)


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
        self._bodies = 0  # held inputs that still carry their body

    def reset(self, partitions: Iterable[int], stored: Mapping[bytes, bytes]) -> None:
        owned = frozenset(partitions)
        self._heaps = {}
        self._bodies = 0
        for store_key, value in stored.items():
            partition = int(store_key.split(b"|", 1)[0])
            if partition in owned:
                held = Held.from_bytes(value)
                self._heaps.setdefault((partition, held.device), []).append(held)
                self._bodies += 1
        for heap in self._heaps.values():
            heapq.heapify(heap)

    def add(self, partition: int, held: Held) -> None:
        heapq.heappush(self._heaps.setdefault((partition, held.device), []), held)
        self._bodies += 1

    def slim(self, keep: int) -> int:
        """Drop the bodies of every held input once more than ``keep`` carry one; returns how many
        were dropped. Only for inputs already in the ``trigger-pending`` store: the stage calls it
        after a step's writes, before the next step reads them back (``envelope_of``)."""
        if self._bodies <= keep:
            return 0
        dropped = 0
        for heap in self._heaps.values():
            for i, held in enumerate(heap):
                if not held.slimmed:
                    heap[i] = held.slim()
                    dropped += 1
            heapq.heapify(heap)  # equal inputs (a retry) may have compared by their bodies
        self._bodies = 0
        return dropped

    def release(self, partition: int, device: bool, before: int | None) -> Iterator[Held]:
        """The held inputs of one class with ``at`` < ``before``, in order, taken out as they go."""
        heap = self._heaps.get((partition, device))
        if before is None or not heap:
            return
        while heap and heap[0].at < before:
            held = heapq.heappop(heap)
            if not held.slimmed:
                self._bodies -= 1
            yield held

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())


def envelope_of(held: Held, partition: int, pending: Callable[[bytes], bytes | None] | None) -> bytes:
    """The envelope of a held input: its own, or the stored one's if it was slimmed."""
    if not held.slimmed:
        return held.envelope
    value = pending(held.store_key(partition)) if pending is not None else None
    if value is None:
        raise ProcessingError("triggers-evaluate", f"held input {held.ident!r} of {held.key!r} is not stored")
    return Held.from_bytes(value).envelope
