"""Who is due when: the devices of one partition by the watermark at which they next need ``advance``.

The watermark is per partition, so one busy device moves time for every device of its partition.
Visiting every device on each move would be O(devices); ``WakeupSchedule`` keeps, per device, the
lowest watermark at which ``advance`` has something to do (``next_wakeup``), in a heap, so each
event costs O(log devices). The worker (``processors.worker.core``, the one sessionizer) keeps one
per partition and rebuilds it from the device states after a restart.
"""

from __future__ import annotations

import heapq


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

    def devices(self) -> list[str]:
        return list(self._wake)

    def __len__(self) -> int:
        return len(self._wake)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._wake
