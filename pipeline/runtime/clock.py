"""One event-time clock for a stage that reads many partitions.

Each source partition reports its own progress (``pipeline.runtime.control.Progress``): the
watermark its writer guarantees (nothing older will follow, late records excepted), or that it
is idle (caught up and quiet) or ended. The stage's watermark is the **minimum over active
sources**; idle and ended sources hold nothing back; it never moves backwards. So a window may
close only once every source that could still bring something for it has passed it.

The choices, next to what others do:
- Flink: per-input watermarks, the operator takes the minimum, inputs marked idle are left out
  (``withIdleness``); all inputs idle means the watermark holds. The same here, except that a
  stage with no active source moves to the slowest idle source's last watermark, which that
  source still guarantees.
- Kafka Streams: "stream time" is the largest timestamp seen, and a window closes when stream time
  passes its end plus grace. Taking the largest over partitions is what made our alerts wrong
  under partition skew: one fast partition closed windows a slow one still had inputs for.
- bytewax / quixstreams: the clock (event time with a wait for late data) is apart from the window
  rule, as ``StageClock`` is apart from the trigger engine and the sessionizer.
- An explicit end of input moves every source to ``END_MS``, so nothing waits for traffic that
  will not come; a source that sends again after its end starts a new epoch from its new time.

Until every expected source has reported once, there is no watermark (None): a stage started
before its upstream must not close windows on half of the story.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.runtime.control import Progress, SourceState

END_MS = 2**62  # end of input: later than any event


@dataclass(slots=True)
class StageClock:
    """The watermark of one stage instance (for example one triggers partition) over its sources."""

    expected: frozenset[str] = frozenset()
    progress: dict[str, Progress] = field(default_factory=dict)
    watermark: int | None = None

    def report(self, source: str, progress: Progress) -> int | None:
        """Take one source's progress; returns the stage's watermark after it."""
        progress = self._keeping_reached_time(source, progress)
        restarted = (
            progress.state is SourceState.ACTIVE
            and self.watermark == END_MS
            and (self.progress.get(source) or progress).state is SourceState.ENDED
        )
        self.progress[source] = progress
        if restarted:
            self.watermark = None  # a new epoch: input resumed after an explicit end
        return self.advance()

    def _keeping_reached_time(self, source: str, progress: Progress) -> Progress:
        """An end of input that brings no time keeps the latest the source reached: without it,
        ``event_time`` after the end forgot that time, and a state first swept after the end (a
        full pass one state per step, a restart) had its scheduled hours skipped, so a churn alert
        due before the end never came."""
        previous = self.progress.get(source)
        if progress.state is SourceState.ENDED and progress.ms is None and previous is not None:
            return Progress(SourceState.ENDED, previous.ms)
        return progress

    def expect(self, sources: Iterable[str]) -> None:
        self.expected = frozenset(sources)

    def advance(self) -> int | None:
        candidate = self._candidate()
        if candidate is not None and (self.watermark is None or candidate > self.watermark):
            self.watermark = candidate
        return self.watermark

    def _candidate(self) -> int | None:
        if any(source not in self.progress for source in self.expected):
            return None
        heard = [self.progress[s] for s in (self.expected or self.progress)]
        if not heard:
            return None
        active = [p.ms for p in heard if p.state is SourceState.ACTIVE]
        if any(ms is None for ms in active):
            return None  # an active source without a watermark yet: it could bring anything
        if active:
            return min(ms for ms in active if ms is not None)
        if all(p.state is SourceState.ENDED for p in heard):
            return END_MS
        # Nothing active: an idle source still guarantees its last watermark, so the slowest of
        # those is safe (and a stage whose sources all went quiet before it heard them active
        # still gets one); past it, hold until traffic decides.
        idle = [p.ms for p in heard if p.state is SourceState.IDLE and p.ms is not None]
        return min(idle) if idle else None

    def event_time(self) -> int | None:
        """A finite "now" for rules that look back from the present (win-back, churn): the
        watermark, or after an end of input the latest time the sources reached."""
        if self.watermark is None or self.watermark < END_MS:
            return self.watermark
        return max((p.ms for p in self.progress.values() if p.ms is not None), default=None)

    def to_bytes(self) -> bytes:
        body = {
            "watermark": self.watermark,
            "progress": {s: [p.state.value, p.ms] for s, p in sorted(self.progress.items())},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes | None, expected: Iterable[str] = ()) -> StageClock:
        clock = cls(frozenset(expected))
        if value:
            raw = json.loads(value)
            clock.watermark = raw.get("watermark")
            clock.progress = {s: Progress(SourceState(st), ms) for s, (st, ms) in raw["progress"].items()}
        return clock
