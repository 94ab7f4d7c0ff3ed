"""The events waiting for the watermark, saved one record each instead of inside their device.

An event waits in its device's buffer for about the allowed lateness (300 s by default). Saved
inside the device record, every batch that touched the device rewrote all of them, payloads
included: 36-51 KB of changelog per event at 300 s (docs/performance.md, "Freshness"). Here each
waiting event is one record of the ``waiting`` store, keyed ``[device id, event id]`` (a JSON
array, so ``webhouse forget`` finds it by the device id): written once when it arrives, a
tombstone when the watermark releases it, while the device record keeps only the open visit and
the recent ids.

``WaitingLedger`` remembers which events of each device the store holds, and turns a device's
buffer after a batch into the writes that bring the store level with it.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable

from pipeline import fast_json
from processors.sessions.events import SessionEvent
from processors.sessions.state import event_from_list, event_to_list

Writes = dict[bytes, tuple[int, bytes | None]]  # key -> (partition, value or None: a tombstone)


def waiting_key(device_id: str, event_id: str) -> bytes:
    return json.dumps([device_id, event_id], separators=(",", ":")).encode()


def encode_waiting(event: SessionEvent) -> bytes:
    return json.dumps(event_to_list(event), separators=(",", ":")).encode()


def decode_waiting(key: bytes, value: bytes) -> SessionEvent:
    device_id, _ = fast_json.loads(key)
    return event_from_list(str(device_id), fast_json.loads(value))


def merge_waiting(buffer: list[SessionEvent], saved: list[SessionEvent]) -> list[SessionEvent]:
    """A device record written before the waiting store kept its events inline: both, once each."""
    if not buffer:
        return saved
    merged = {event.event_id: event for event in (*buffer, *saved)}
    return sorted(merged.values(), key=lambda e: (e.time_ms, e.event_id))


class WaitingLedger:
    """Per device, the ids of its waiting events the store holds."""

    def __init__(self) -> None:
        self.saved: dict[str, set[str]] = {}

    def load(
        self, records: Iterable[tuple[bytes, bytes]], devices: Container[str]
    ) -> dict[str, list[SessionEvent]]:
        """The store's records of ``devices`` (those just read from the table; the others' are
        known live), by device, each device's events in buffer order (time, id)."""
        found: dict[str, list[SessionEvent]] = {}
        for key, value in records:
            if not value or str(fast_json.loads(key)[0]) not in devices:
                continue
            event = decode_waiting(key, value)
            found.setdefault(event.device_id, []).append(event)
            self.saved.setdefault(event.device_id, set()).add(event.event_id)
        for events in found.values():
            events.sort(key=lambda e: (e.time_ms, e.event_id))
        return found

    def level(self, device_id: str, partition: int, buffer: Iterable[SessionEvent], writes: Writes) -> None:
        """Add to ``writes`` what makes the store hold exactly ``buffer`` for this device."""
        saved = self.saved.get(device_id, set())
        now = {event.event_id: event for event in buffer}
        for event_id in saved - now.keys():
            writes[waiting_key(device_id, event_id)] = (partition, None)
        for event_id in now.keys() - saved:
            writes[waiting_key(device_id, event_id)] = (partition, encode_waiting(now[event_id]))
        if now:
            self.saved[device_id] = set(now)
        else:
            self.saved.pop(device_id, None)

    def drop(self, device_id: str, partition: int, writes: Writes) -> None:
        """The device is gone (erased, expired): tombstones for whatever the store holds of it."""
        self.level(device_id, partition, (), writes)

    def keep_only(self, device_ids: Iterable[str]) -> None:
        """After a rebalance: forget the devices of partitions no longer owned."""
        kept = set(device_ids)
        self.saved = {d: ids for d, ids in self.saved.items() if d in kept}
