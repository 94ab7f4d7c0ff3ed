"""Rebalances seen by the stack's consumers, from their own Prometheus counters.

The stream stages count each revocation or loss of partitions (``webhouse_stage_rebalances``,
``pipeline/runtime/kafka.py``), the sinks theirs (``webhouse_sink_rebalances``). A counter lives
as long as its process, and the chaos run kills processes: so every live service is scraped
every second and the highest value seen per process start is kept; a killed process loses only
what it counted since its last scrape. One group rebalance counts once per member that held
partitions (each revokes), so this is a count of members' revocations, not of group generations.
"""

from __future__ import annotations

import http.client
import logging
import threading
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

COUNTERS = ("webhouse_stage_rebalances", "webhouse_sink_rebalances")


def rebalances_in(text: str) -> Counter[str]:
    """``/metrics`` text -> rebalances by stage (``sink`` for the sink's counter)."""
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name not in COUNTERS:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[sample.labels.get("stage", "sink")] += int(sample.value)
    return found


class RebalanceCount:
    """The highest count each (service, start, stage) showed; their sum is the run's count."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, str], int] = {}
        self._lock = threading.Lock()

    def observe(self, service: str, start: int, counts: Counter[str]) -> None:
        with self._lock:
            for stage, n in counts.items():
                key = (service, start, stage)
                self._seen[key] = max(self._seen.get(key, 0), n)

    def scrape(self, service: str, start: int, port: int) -> None:
        """Read one service's counters; a process that is not (yet, or any more) answering is skipped,
        also one that dies in the middle of its answer (``IncompleteRead``: seen when the chaos
        supervisor's scrape met a worker exiting, and the thread's error failed the run's test)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as answer:
                text = answer.read().decode()
        except (OSError, http.client.HTTPException) as exc:
            log.debug("no metrics from %s: %s", service, exc)
            return
        self.observe(service, start, rebalances_in(text))

    def by_stage(self) -> Counter[str]:
        with self._lock:
            total: Counter[str] = Counter()
            for (_, _, stage), n in self._seen.items():
                total[stage] += n
            return total

    @property
    def total(self) -> int:
        return sum(self.by_stage().values())
