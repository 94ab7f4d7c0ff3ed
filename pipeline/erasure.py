"""Erasure records: who was forgotten, and from when on their events count again.

``webhouse forget`` writes one ``Erasure`` per customer to the compacted erasures topic
(``pipeline.kafka_forget.record_erasure``), keyed by customer id so compaction keeps it.
The stream stages hold every erasure they have read in an ``Erasures`` registry and ask
it, per input, whether the input belongs to a forgotten id and happened before that id
was forgotten: then it is dropped, so a replay of a topic or a late event cannot bring the
profile back. What happens after the erasure (a returning customer) counts again, and
starts from nothing, since the stages dropped their state at the erasure.

"Before" is judged on every time an input carries (its event time and, for an event, the
collector's receive time): a replayed event keeps its original receive time, a late one
(a device's queue flushed after the forget) its original event time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from pipeline.errors import SerdeError
from pipeline.immutable import immutable


@immutable
class Erasure:
    """One forgotten customer: its id, its devices' anonymous ids, and when it was forgotten."""

    customer_id: str
    anonymous_ids: tuple[str, ...]
    erased_at: datetime

    @property
    def erased_ms(self) -> int:
        return int(self.erased_at.timestamp() * 1000)

    def ids(self) -> frozenset[str]:
        return frozenset([self.customer_id, *self.anonymous_ids])

    def to_bytes(self) -> bytes:
        record = {
            "customer_id": self.customer_id,
            "anonymous_ids": sorted(set(self.anonymous_ids)),
            "erased_at": self.erased_at.isoformat(),
        }
        return json.dumps(record).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Erasure:
        """The record as ``record_erasure`` wrote it; a typed error for anything else."""
        try:
            data = json.loads(value)
            erased_at = datetime.fromisoformat(data["erased_at"])
            if erased_at.tzinfo is None:
                raise ValueError("erased_at has no time zone")
            return cls(str(data["customer_id"]), tuple(str(a) for a in data["anonymous_ids"]), erased_at)
        except (ValueError, KeyError, TypeError) as exc:
            raise SerdeError(f"not an erasure record: {exc}") from exc


class Erasures:
    """Every erasure read so far: id -> the latest time it was forgotten (epoch ms).

    An id forgotten twice keeps the later time. The registry only grows (one entry per
    forgotten id), as the compacted topic does; a tombstone on that topic withdraws nothing.
    """

    def __init__(self) -> None:
        self._at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def apply(self, erasure: Erasure) -> None:
        at = erasure.erased_ms
        for key in erasure.ids():
            self._at[key] = max(at, self._at.get(key, at))

    def forgotten_at(self, key: str | None) -> int | None:
        return None if key is None else self._at.get(key)

    def covers(self, ids: Iterable[str | None], times_ms: Iterable[int | None]) -> bool:
        """True when one of ``ids`` was forgotten after one of the input's ``times_ms``.

        An input with no known time is covered by any erasure of its ids: nothing says it is new.
        """
        if not self._at:
            return False
        erased = [at for key in ids if (at := self.forgotten_at(key)) is not None]
        if not erased:
            return False
        known = [t for t in times_ms if t is not None]
        if not known:
            return True
        return min(known) < max(erased)
