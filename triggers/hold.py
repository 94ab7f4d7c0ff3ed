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

The held inputs live in two heaps per partition here, and in the ``trigger-pending`` store so
that a restart resumes with them: **one record per partition and step** holds the inputs that
step read and could not apply yet (or a few, each up to ``RECORD_BYTES``, for a step of large
inputs). Nearly every customer input waits a step or more (for the
reports above), and a record per input, written once and deleted once, was 40% of all the records
the pipeline produced (issue 11). A stored input counts as applied once its partition's mark has
passed it (``release`` takes exactly those, and the marks are stored with the step), so after an
assignment the held inputs are each record's inputs that the stored clocks have not passed.
A record is deleted when its last input is applied, and written again with only the inputs still
held once three quarters of it have been, so that one long-held input does not keep a large record.

Customer inputs wait for reports that come round the stage's own input topic, so in a catch-up
they are held for as long as the stage lags, and their number grows with that lag (it was most of
a worker's memory growth over a million events). Past ``triggers.held_in_memory`` the heaps are
emptied into their records (``HeldInputs.park``): what stays in memory is, per record and class,
the earliest time among its inputs. A record's inputs of a class come back into the heap when the
mark is about to pass that time (``release``), so memory holds the inputs near the mark, not all.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline import fast_json
from pipeline.errors import ProcessingError

KIND_RANK = {"absorb": 0, "event": 1, "session": 2, "handover": 3}


class Held(NamedTuple):
    """One held input. A tuple, so that the heaps compare them natively, field by field: an ordered
    dataclass's ``__lt__`` builds two tuples per comparison (measured: 2-5% of the evaluate stage).
    ``batch``: the key of the ``trigger-pending`` record it is (or will be) stored in."""

    at: int
    rank: int
    key: bytes
    ident: str
    device: bool
    envelope: bytes
    batch: bytes = b""

    def to_bytes(self) -> bytes:
        """A JSON line of what orders the input, then its envelope as it came: the envelope is not
        escaped into a JSON string, and a read parses only the first line (compact JSON holds no
        raw newline, so the first one ends it)."""
        head = fast_json.compact([self.at, self.rank, self.key.decode(), self.ident, self.device])
        return head + b"\n" + self.envelope

    @classmethod
    def from_bytes(cls, value: bytes, batch: bytes = b"") -> Held:
        head, newline, envelope = value.partition(b"\n")
        if newline:
            at, rank, key, ident, device = fast_json.loads(head)
        else:  # written before 3 December 2026: one JSON array, the envelope its last item, a string
            at, rank, key, ident, device, text = fast_json.loads(value)
            envelope = text.encode()
        return cls(int(at), int(rank), key.encode(), str(ident), bool(device), envelope, batch)


BATCH_HEAD = b"held-batch\n"  # a record of many inputs; one without it holds a single input


def batch_key(partition: int, offset: int) -> bytes:
    """The record of the inputs a step read from one partition: named by the first one's offset
    (a step redone after an abort reads the same offsets, and writes the same record again)."""
    return b"%d|b%020d" % (partition, offset)


# A record past this many bytes of inputs is closed, and the step's next inputs of its partition go
# to another. A step reads up to ``worker.batch_max_events`` inputs; all in one record could pass
# what Kafka takes in one record (librdkafka's ``message.max.bytes``, 1,000,000), and that failed
# the step's transaction, and the same step again after every restart: the stage stalled.
RECORD_BYTES = 256 * 1024
# Each stored input's bytes beside its key, id and envelope: the order line's numbers, quotes and
# commas (at most 37), the length before it (at most 9), and a share of the record's head (11).
ITEM_OVERHEAD = 64


def _json_text_bytes(text: str) -> int:
    """At most the bytes of ``text`` as compact JSON writes it inside quotes: one per character
    when ASCII, else up to 12 (an escaped surrogate pair)."""
    return len(text) if text.isascii() else 12 * len(text)


def stored_size(held: Held) -> int:
    """At most the bytes ``held`` takes in a record, less ``ITEM_OVERHEAD``: its key and id in the
    order line, and its envelope."""
    return _json_text_bytes(held.key.decode()) + _json_text_bytes(held.ident) + len(held.envelope)


class BatchKeys:
    """The record (``batch_key``) each input a step reads goes to: per partition, named by the
    offset of the first input in it, and another before it would pass ``RECORD_BYTES`` (an input
    larger than that alone goes to a record of its own). The same inputs read in the same order
    get the same keys, as ``batch_key`` promises a step redone."""

    def __init__(self, limit: int = RECORD_BYTES) -> None:
        self.limit = limit
        self._open: dict[int, tuple[bytes, int]] = {}  # partition -> its open record, bytes in it

    def key(self, partition: int, offset: int, size: int) -> bytes:
        """The key of the record an input of ``size`` bytes (``stored_size``) goes to."""
        size += ITEM_OVERHEAD
        record = self._open.get(partition)
        if record is None or record[1] + size > self.limit:
            record = (batch_key(partition, offset), 0)
        self._open[partition] = (record[0], record[1] + size)
        return record[0]


def encode_batch(inputs: Iterable[Held]) -> bytes:
    """Each input's ``to_bytes`` after its length, one after the other."""
    parts = [BATCH_HEAD]
    for held in inputs:
        item = held.to_bytes()
        parts.append(b"%d\n" % len(item))
        parts.append(item)
    return b"".join(parts)


def stored_inputs(key: bytes, value: bytes) -> list[Held]:
    """The inputs of a ``trigger-pending`` record: a step's (``encode_batch``), or a single one
    as records were written before 4 December 2026 (each input under its own key)."""
    if not value.startswith(BATCH_HEAD):
        return [Held.from_bytes(value, key)]
    inputs = []
    at = len(BATCH_HEAD)
    while at < len(value):
        newline = value.index(b"\n", at)
        end = newline + 1 + int(value[at:newline])
        inputs.append(Held.from_bytes(value[newline + 1 : end], key))
        at = end
    return inputs


def held_of(
    key: bytes, envelope: bytes, kind: str, body: Mapping[str, Any], gap_ms: int, batch: bytes = b""
) -> Held:
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
    return Held(max(at, 0), KIND_RANK[kind], key, ident, device, envelope, batch)


Mark = Callable[[int, bool], int | None]  # (partition, device) -> the mark its inputs are applied below
PendingWrite = tuple[int, bytes, bytes | None]  # (partition, key, value or None: delete)
SHRINK = 4  # a record is written again with its remaining inputs once 1/SHRINK of them remain


def _applied(held: Held, mark: Mark, partition: int) -> bool:
    before = mark(partition, held.device)
    return before is not None and held.at < before


@dataclass(slots=True)
class _Record:
    """A ``trigger-pending`` record: its partition, inputs still held, inputs it holds; and per class
    whose inputs are parked in it (not in memory), the mark they had been applied below then."""

    partition: int
    held: int
    written: int
    parked: dict[bool, int | None] = field(default_factory=dict)


class HeldInputs:
    """Per owned partition, the held inputs of each class in release order, in memory or parked
    in their records; and which stored record holds each (``settle`` says what to write)."""

    def __init__(self) -> None:
        self._heaps: dict[tuple[int, bool], list[Held]] = {}
        self._loaded = 0  # held inputs in the heaps
        # Per partition and class, (the earliest time among a record's parked inputs, its key).
        self._parked: dict[tuple[int, bool], list[tuple[int, bytes]]] = {}
        self._records: dict[bytes, _Record] = {}
        self._emptied: list[tuple[int, bytes]] = []  # found with nothing held at a reset: to delete

    def reset(self, partitions: Iterable[int], stored: Mapping[bytes, bytes], mark: Mark) -> None:
        """Start from the store: of each record of these partitions, the inputs ``mark`` (the stored
        clocks) has not passed are held (the others were applied by the step that stored the
        clocks), parked in their records until ``release`` comes near them."""
        owned = frozenset(partitions)
        self._heaps = {}
        self._loaded = 0
        self._parked = {}
        self._records = {}
        self._emptied = []
        for key, value in stored.items():
            partition = int(key.split(b"|", 1)[0])
            if partition not in owned:
                continue
            inputs = stored_inputs(key, value)
            held = [h for h in inputs if not _applied(h, mark, partition)]
            if not held:
                self._emptied.append((partition, key))
                continue
            record = self._records[key] = _Record(partition, len(held), len(inputs))
            self._park(key, record, held, mark)

    def add(self, partition: int, held: Held) -> None:
        heapq.heappush(self._heaps.setdefault((partition, held.device), []), held)
        self._loaded += 1

    def park(self, keep: int, mark: Mark) -> int:
        """Past ``keep`` inputs in memory, put them all back into their records (stored: the stage
        calls it after a step's writes, before the next step reads them); returns how many."""
        if self._loaded <= keep:
            return 0
        by_record: dict[bytes, list[Held]] = {}
        for heap in self._heaps.values():
            for held in heap:
                by_record.setdefault(held.batch, []).append(held)
        for key, inputs in by_record.items():
            self._park(key, self._records[key], inputs, mark)
        parked, self._loaded, self._heaps = self._loaded, 0, {}
        return parked

    def _park(self, key: bytes, record: _Record, inputs: Iterable[Held], mark: Mark) -> None:
        first: dict[bool, int] = {}
        for held in inputs:
            first[held.device] = min(first.get(held.device, held.at), held.at)
        for device, at in first.items():
            record.parked[device] = mark(record.partition, device)
            heapq.heappush(self._parked.setdefault((record.partition, device), []), (at, key))

    def release(
        self, partition: int, device: bool, before: int | None, stored: Callable[[bytes], bytes | None]
    ) -> Iterator[Held]:
        """The held inputs of one class with ``at`` < ``before``, in order, taken out as they go;
        first, those of the records parked with such an input are read back from ``stored``."""
        if before is None:
            return
        self._unpark(partition, device, before, stored)
        heap = self._heaps.get((partition, device))
        while heap and heap[0].at < before:
            self._loaded -= 1
            yield heapq.heappop(heap)

    def _unpark(
        self, partition: int, device: bool, before: int, stored: Callable[[bytes], bytes | None]
    ) -> None:
        parked = self._parked.get((partition, device))
        while parked and parked[0][0] < before:
            _, key = heapq.heappop(parked)
            below = self._records[key].parked.pop(device)
            value = stored(key)
            if value is None:
                raise ProcessingError("triggers-evaluate", f"held inputs' record {key!r} is not stored")
            heap = self._heaps.setdefault((partition, device), [])
            for held in stored_inputs(key, value):
                if held.device == device and (below is None or held.at >= below):
                    heapq.heappush(heap, held)
                    self._loaded += 1

    def settle(
        self,
        read: Iterable[tuple[int, Held]],
        applied: Iterable[tuple[int, Held]],
        mark: Mark,
        stored: Callable[[bytes], bytes | None],
    ) -> list[PendingWrite]:
        """The step's writes to the ``trigger-pending`` store, after ``read`` (its inputs) and
        ``applied`` (what it released): a record per batch key of the inputs it read and still
        holds; the deletion of records whose last input it applied, and records mostly applied
        written again with what remains (read back from ``stored``, kept by ``mark``)."""
        fresh = Counter(held for _, held in read)
        touched: set[bytes] = set()
        for _, held in applied:
            if fresh[held] > 0:  # read and applied in this step: never stored
                fresh[held] -= 1
                continue
            record = self._records.get(held.batch)
            if record is None:
                raise ProcessingError(
                    "triggers-evaluate", f"applied input {held.ident!r} has no stored record"
                )
            record.held -= 1
            touched.add(held.batch)
        writes: list[PendingWrite] = [(p, key, None) for p, key in self._emptied]
        self._emptied = []
        for key in sorted(touched):
            writes.extend(self._shrink(key, mark, stored))
        by_batch: dict[bytes, tuple[int, list[Held]]] = {}
        for partition, held in read:
            if fresh[held] > 0:
                fresh[held] -= 1
                by_batch.setdefault(held.batch, (partition, []))[1].append(held)
        for key, (partition, inputs) in by_batch.items():
            if key in self._records:
                raise ProcessingError("triggers-evaluate", f"held inputs' record {key!r} written twice")
            self._records[key] = _Record(partition, len(inputs), len(inputs))
            writes.append((partition, key, encode_batch(inputs)))
        return writes

    def _shrink(self, key: bytes, mark: Mark, stored: Callable[[bytes], bytes | None]) -> list[PendingWrite]:
        record = self._records[key]
        if record.held == 0:
            del self._records[key]
            return [(record.partition, key, None)]
        if record.held * SHRINK > record.written:
            return []
        value = stored(key)
        held = (
            []
            if value is None
            else [h for h in stored_inputs(key, value) if not _applied(h, mark, record.partition)]
        )
        if len(held) != record.held:
            raise ProcessingError(
                "triggers-evaluate", f"held inputs' record {key!r} holds {len(held)}, not {record.held}"
            )
        record.written = record.held
        return [(record.partition, key, encode_batch(held))]

    @property
    def in_memory(self) -> int:
        """Held inputs in the heaps (the others are parked in their records)."""
        return self._loaded

    @property
    def held(self) -> int:
        """Held inputs stored, in memory or parked (after ``settle``: every input held)."""
        return sum(record.held for record in self._records.values())

    @property
    def records(self) -> int:
        """``trigger-pending`` records holding inputs still held."""
        return len(self._records)
