"""The worker's per-device state: its record, a summary readable without decoding it, and the
cache of decoded devices in front of the ``devices`` store.

With a million devices, decoding every record on an assignment took 37 s and 5 GB (objects for
visits long closed). So only what the clock and the indexes need is read up front, from a fixed
header on each record (``DeviceSummary``): which devices hold an open visit (decoded, they stay in
memory: the watermark may close them at any batch), which customers a device is linked to (the
device-limit guard and server-side events count on every link), and when it was last seen
(expiry). Every other device is decoded when an event needs it, and kept while recently used
(``worker.device_cache``).
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import fast_json
from pipeline.immutable import immutable
from processors.identity import IdentityState
from processors.sessions.state import DeviceState

_MAGIC = 1  # a JSON record (the format before the header) starts with "{"
_HEADER = struct.Struct(">BBiqI")  # magic, flags, partition, last seen (ms), length of the links
_OPEN, _VISITLESS, _SEEN = 1, 2, 4


@dataclass(slots=True)
class Device:
    """What the worker keeps per session key (anonymous id, else user id): session state and identity.
    Its record leaves the waiting events out: they are saved apart (``processors.worker.waiting``)."""

    partition: int
    session: DeviceState | None = None
    identity: IdentityState = field(default_factory=IdentityState)
    last_ms: int | None = None  # event time of its latest event: idle devices expire (``expire``)
    # Only ever seen in events joining no visit (a crawler): kept for its duplicate memory alone,
    # so it expires sooner (``worker.visitless_ttl_s``).
    visitless: bool = False

    def to_bytes(self) -> bytes:
        body = {
            "s": self.session.to_dict(with_buffer=False) if self.session is not None else None,
            "i": self.identity.to_json() if not self.identity.is_empty else None,
        }
        links = [[c, a, seen] for c, a, seen in _links(self.identity)]
        links_bytes = json.dumps(links, separators=(",", ":")).encode() if links else b""
        flags = (
            (_OPEN if self.session is not None and self.session.current is not None else 0)
            | (_VISITLESS if self.visitless else 0)
            | (_SEEN if self.last_ms is not None else 0)
        )
        header = _HEADER.pack(_MAGIC, flags, self.partition, self.last_ms or 0, len(links_bytes))
        return header + links_bytes + json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Device:
        if data[:1] != b"{":
            _, flags, partition, last_ms, _ = _HEADER.unpack_from(data)
            raw = record_body(data)
            seen = last_ms if flags & _SEEN else None
            return cls(partition, _session(raw), _identity(raw), seen, bool(flags & _VISITLESS))
        raw = fast_json.loads(data)  # written before the header
        return cls(raw["p"], _session(raw), _identity(raw), raw.get("t"), bool(raw.get("x")))


def record_body(data: bytes) -> dict[str, Any]:
    """The JSON after a record's header: the visit (``s``) and the identity (``i``)."""
    if data[:1] == b"{":
        return dict(fast_json.loads(data))
    _, _, _, _, length = _HEADER.unpack_from(data)
    return dict(fast_json.loads(data[_HEADER.size + length :]))


def _links(identity: IdentityState) -> Iterator[tuple[str, str, int]]:
    """As the identity record keeps them: times in whole milliseconds."""
    for link in identity.links:
        yield link.customer_id, link.anonymous_id, int(link.last_seen.timestamp() * 1000)


def _session(raw: dict[str, object]) -> DeviceState | None:
    return DeviceState.from_dict(raw["s"]) if raw.get("s") else None  # type: ignore[arg-type]


def _identity(raw: dict[str, object]) -> IdentityState:
    return IdentityState.from_json(raw["i"]) if raw.get("i") else IdentityState()  # type: ignore[arg-type]


@immutable
class DeviceSummary:
    """A device record's header: enough to schedule, index and expire it without decoding it."""

    partition: int
    open_visit: bool
    visitless: bool
    last_ms: int | None
    links: tuple[tuple[str, str, int], ...]  # (customer id, device id, last seen in ms)

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceSummary:
        if data[:1] == b"{":  # written before the header: decoded in full, once
            return cls.of(Device.from_bytes(data))
        _, flags, partition, last_ms, length = _HEADER.unpack_from(data)
        links = fast_json.loads(data[_HEADER.size : _HEADER.size + length]) if length else ()
        return cls(
            partition, bool(flags & _OPEN), bool(flags & _VISITLESS), last_ms if flags & _SEEN else None,
            tuple((str(c), str(a), int(t)) for c, a, t in links),
        )  # fmt: skip

    @classmethod
    def of(cls, device: Device) -> DeviceSummary:
        links = tuple(_links(device.identity))
        open_visit = device.session is not None and device.session.current is not None
        return cls(device.partition, open_visit, device.visitless, device.last_ms, links)


class DeviceCache:
    """Decoded devices in front of the ``devices`` store.

    Pinned devices (``pinned``: those the clock has to visit, an open visit or waiting events)
    are never evicted, so their waiting events, kept only in memory between batches, are never
    lost; the others go least recently used first once more than ``limit`` are decoded. Eviction
    happens only at the start of a call of the core (``trim``): by then every change made in the
    previous call is in the store (the runtime wrote the step's writes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: OrderedDict[str, Device] = OrderedDict()
        self.store: Mapping[bytes, bytes] = {}

    def get(self, device_id: str) -> Device | None:
        device = self.live.get(device_id)
        if device is not None:
            self.live.move_to_end(device_id)
            return device
        value = self.store.get(device_id.encode())
        if not value:
            return None
        device = self.live[device_id] = Device.from_bytes(value)
        return device

    def __setitem__(self, device_id: str, device: Device) -> None:
        self.live[device_id] = device

    def pop(self, device_id: str) -> Device | None:
        device = self.live.pop(device_id, None)
        if device is not None:
            return device
        value = self.store.get(device_id.encode())
        return Device.from_bytes(value) if value else None

    def discard(self, device_id: str) -> None:
        """Forget the decoded copy (the caller tombstones the record)."""
        self.live.pop(device_id, None)

    def keep_only(self, partitions: Collection[int]) -> None:
        self.live = OrderedDict((k, d) for k, d in self.live.items() if d.partition in partitions)

    def trim(self, pinned: Callable[[str, Device], bool]) -> None:
        """Evict the least recently used unpinned devices down to ``limit`` (pinned ones met on the
        way go to the back, so the next trim does not step over them again)."""
        live = self.live
        excess, budget = len(live) - self.limit, len(live)
        while excess > 0 and budget > 0:
            budget -= 1
            device_id, device = next(iter(live.items()))
            if pinned(device_id, device):
                live.move_to_end(device_id)
            else:
                del live[device_id]
                excess -= 1

    def __getitem__(self, device_id: str) -> Device:
        device = self.get(device_id)
        if device is None:
            raise KeyError(device_id)
        return device

    def __contains__(self, device_id: object) -> bool:
        return isinstance(device_id, str) and self.get(device_id) is not None

    def __len__(self) -> int:
        """Devices in the store (decoded or not)."""
        return len(self.store)

    def items(self) -> Iterator[tuple[str, Device]]:
        """Every device, each decoded (for tests and tools: a full scan)."""
        for key, value in self.store.items():
            device_id = key.decode()
            yield device_id, self.live.get(device_id) or Device.from_bytes(value)
        for device_id, device in list(self.live.items()):
            if device_id.encode() not in self.store:
                yield device_id, device

    def summaries(self) -> Iterator[tuple[str, DeviceSummary]]:
        """Every stored device of the owned partitions (a scan of the store); a decoded one by its
        live state, which is as new or newer."""
        for key, value in self.store.items():
            device_id = key.decode()
            device = self.live.get(device_id)
            yield (
                device_id,
                (DeviceSummary.of(device) if device is not None else DeviceSummary.from_bytes(value)),
            )
