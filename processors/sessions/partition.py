"""One partition's sessionizer: the watermark, the device states and who is due when.

The watermark is per partition (largest event time seen minus the allowed lateness), so one busy
device moves time for every device of its partition. Visiting every device on each event would be
O(devices); ``WakeupSchedule`` keeps, per device, the lowest watermark at which ``advance`` has
something to do (``next_wakeup``), in a heap, so each event costs O(log devices).

The worker (``processors.worker.core``) keeps one ``WakeupSchedule`` per partition over the same
stream functions, with its own watermark rule (capped by the collector's clock, moved per batch).
``PartitionSessionizer`` is the same thing for one in-memory partition in event order, for the
property tests and benches: ``states`` may be any mutable mapping.
The watermark must survive restarts as well for replays to repeat the same verdicts; persist
``watermark_ms`` next to the states and pass it back in.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, MutableMapping

from processors.sessions.events import SessionEvent
from processors.sessions.policy import SessionPolicy
from processors.sessions.records import DuplicateEvent, Output
from processors.sessions.state import NO_WATERMARK, DeviceState
from processors.sessions.stream import add_event, advance, flush, next_wakeup


class WakeupSchedule:
    """Device ids by the watermark at which they next need ``advance`` (heap, lazy deletion)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._wake: dict[str, int] = {}

    def set(self, device_id: str, wake_ms: int | None) -> None:
        if wake_ms is None:
            self._wake.pop(device_id, None)
            return
        if self._wake.get(device_id) == wake_ms:
            return
        self._wake[device_id] = wake_ms
        heapq.heappush(self._heap, (wake_ms, device_id))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._wake):
            self._heap = [(wake, device) for device, wake in self._wake.items()]
            heapq.heapify(self._heap)

    def pop_due(self, watermark_ms: int) -> list[str]:
        """Devices whose wake-up the watermark has reached; they leave the schedule."""
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= watermark_ms:
            wake_ms, device_id = heapq.heappop(heap)
            if self._wake.get(device_id) == wake_ms:
                del self._wake[device_id]
                due.append(device_id)
        return due

    def earliest(self) -> float:
        """The lowest wake-up in the heap (maybe stale), or infinity: a cheap 'anything due?'."""
        return self._heap[0][0] if self._heap else float("inf")

    def devices(self) -> list[str]:
        return list(self._wake)

    def __len__(self) -> int:
        return len(self._wake)


class PartitionSessionizer:
    """Feed a partition's events in log order; get assignments, closed visits and late events."""

    def __init__(
        self,
        policy: SessionPolicy,
        states: MutableMapping[str, DeviceState] | None = None,
        watermark_ms: int = NO_WATERMARK,
    ) -> None:
        self.policy = policy
        self.states: MutableMapping[str, DeviceState] = states if states is not None else {}
        self.watermark_ms = watermark_ms
        self.schedule = WakeupSchedule()
        for device_id, state in self.states.items():
            self.schedule.set(device_id, next_wakeup(state, policy))

    def process(self, event: SessionEvent) -> list[Output]:
        """One event in partition order: its own verdict plus whatever the watermark now releases."""
        policy = self.policy
        watermark_ms = event.time_ms - policy.allowed_lateness_ms
        if watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
        else:
            watermark_ms = self.watermark_ms
        state, outputs = add_event(self.states.get(event.device_id), event, watermark_ms, policy)
        if not (outputs and type(outputs[0]) is DuplicateEvent):  # a duplicate changed nothing
            self._store(state)
        if self.schedule.earliest() <= watermark_ms:
            outputs.extend(self._advance_due())
        return outputs

    def process_many(self, events: Iterable[SessionEvent]) -> list[Output]:
        outputs: list[Output] = []
        for event in events:
            outputs.extend(self.process(event))
        return outputs

    def advance_to(self, watermark_ms: int) -> list[Output]:
        """Move the watermark without an event (e.g. from an external clock); never backwards."""
        self.watermark_ms = max(self.watermark_ms, watermark_ms)
        return self._advance_due()

    def flush(self, device_ids: Iterable[str] | None = None) -> list[Output]:
        """Close every open visit (or those of ``device_ids``) as ``idle_sweep``: end of stream."""
        outputs: list[Output] = []
        for device_id in list(device_ids) if device_ids is not None else self.schedule.devices():
            state = self.states.get(device_id)
            if state is None or state.is_idle:
                continue
            state, advanced = advance(state, self.watermark_ms, self.policy)
            outputs.extend(advanced)
            state, flushed = flush(state, self.policy)
            self._store(state)
            outputs.extend(flushed)
        return outputs

    def _advance_due(self) -> list[Output]:
        outputs: list[Output] = []
        for device_id in self.schedule.pop_due(self.watermark_ms):
            state, advanced = advance(self.states[device_id], self.watermark_ms, self.policy)
            self._store(state)
            outputs.extend(advanced)
        return outputs

    def _store(self, state: DeviceState) -> None:
        self.states[state.device_id] = state
        self.schedule.set(state.device_id, next_wakeup(state, self.policy))
