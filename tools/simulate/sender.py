"""Sending the stream to the collector: Segment ``/v1/batch`` posts over real HTTP (aiohttp).

- Order: the stream is cut into consecutive batches. With one lane (the default) batches go
  one after another, so the collector sees the whole stream in event-time order; that
  matters because the processors' watermark is per partition and a compressed month turns
  a second of wall-clock disorder into hours of event time. With ``concurrency`` n > 1,
  actors are spread over n lanes by a stable hash of their key: each actor's messages stay
  in order, different actors may interleave.
- Pace: message i is not sent before ``start + i / rate`` (``rate`` 0: as fast as the
  collector answers), so a month of behaviour replays in the wall time the rate implies.
- ``sentAt`` is stamped with the wall clock on every attempt, as Segment's libraries do, so
  the processors' skew correction (``received - (sent - timestamp)``) keeps event time.
- Answers: 2xx counts the events the collector accepted and refused (its body's
  ``accepted``/``rejected`` when given); 503/429 wait ``Retry-After`` and retry the same
  batch (same message ids); other 5xx and network errors back off exponentially with jitter;
  401/403 stop the run (wrong write key); another 4xx is recorded, not retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import logging
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from pipeline.errors import SimulationError
from tools.simulate.messages import SimEvent

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SendPolicy:
    url: str  # collector base URL, e.g. http://127.0.0.1:8088
    write_key: str
    rate: float = 0.0  # events per second; 0 = unpaced
    batch_size: int = 100
    max_batch_bytes: int = 400_000  # under Segment's 500 KB request limit
    concurrency: int = 1
    timeout_s: float = 10.0
    max_retries: int = 8
    backoff_s: float = 0.25
    max_backoff_s: float = 20.0
    gzip: bool = False
    sent_at: bool = True  # stamp sentAt (wall clock); off: processors take timestamps as they are

    def __post_init__(self) -> None:
        if self.rate < 0 or self.batch_size < 1 or self.concurrency < 1 or self.max_retries < 0:
            raise SimulationError("rate must be >= 0; batch_size, concurrency >= 1; max_retries >= 0")


@dataclass(frozen=True, slots=True)
class Batch:
    lane: int
    first: int  # stream index of the first and last message (for pacing)
    last: int
    events: tuple[SimEvent, ...]


@dataclass(slots=True)
class SendReport:
    events: int = 0
    requests: int = 0
    accepted: int = 0  # events the collector took
    refused: int = 0  # events it refused one by one (malformed ones should be here)
    rejected_batches: int = 0  # whole requests refused with a 4xx
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def lane_of(key: str, lanes: int) -> int:
    return zlib.crc32(key.encode()) % lanes if lanes > 1 else 0


def plan_batches(events: Sequence[SimEvent], policy: SendPolicy) -> list[Batch]:
    """Consecutive batches per lane, bounded by count and JSON size (pure)."""
    open_: dict[int, tuple[int, list[SimEvent], int]] = {}
    batches: list[Batch] = []

    def close(lane: int) -> None:
        first, items, _ = open_.pop(lane)
        batches.append(Batch(lane, first, first + len(items) - 1, tuple(items)))

    for index, event in enumerate(events):
        lane = lane_of(event.key, policy.concurrency)
        size = len(json.dumps(event.body, separators=(",", ":"))) + 64  # room for sentAt
        if lane in open_:
            first, items, total = open_[lane]
            if len(items) >= policy.batch_size or total + size > policy.max_batch_bytes:
                close(lane)
        if lane not in open_:
            open_[lane] = (index, [], 0)
        first, items, total = open_[lane]
        items.append(event)
        open_[lane] = (first, items, total + size)
    for lane in sorted(open_):
        close(lane)
    batches.sort(key=lambda b: b.first)
    return batches


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class _Again:
    """An answer worth retrying: what went wrong, and the collector's Retry-After if it gave one."""

    problem: str
    after: float | None = None


def _outcome(state: RetryCallState) -> _Again:
    assert state.outcome is not None
    again: _Again = state.outcome.result()
    return again


def _body(batch: Batch, compress: bool, stamp: bool) -> bytes:
    doc: dict[str, Any]
    if stamp:
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        doc = {"batch": [{**e.body, "sentAt": sent_at} for e in batch.events], "sentAt": sent_at}
    else:
        doc = {"batch": [e.body for e in batch.events]}
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return gzip.compress(data, compresslevel=5) if compress else data


class _Sender:
    def __init__(
        self, session: aiohttp.ClientSession, policy: SendPolicy, total: int, progress: Progress | None
    ) -> None:
        self.session, self.policy, self.total, self.progress = session, policy, total, progress
        self.report = SendReport()
        self.endpoint = policy.url.rstrip("/") + "/v1/batch"
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": aiohttp.encode_basic_auth(policy.write_key, ""),  # the write key is the user
        }
        if policy.gzip:
            self.headers["Content-Encoding"] = "gzip"
        self.jitter = random.Random()  # timing only; never touches the generated stream
        self.start = time.monotonic()

    async def lane(self, batches: list[Batch]) -> None:
        for batch in batches:
            if self.policy.rate > 0:
                due = self.start + (batch.last + 1) / self.policy.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.post(batch)
            self.report.events += len(batch.events)
            if self.progress is not None:
                self.progress(self.report.events, self.total)

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the collector gave one, else capped exponential backoff with jitter."""
        again = _outcome(state)
        if again.after is not None:
            return min(again.after, self.policy.max_backoff_s)
        ceiling = min(self.policy.max_backoff_s, self.policy.backoff_s * 2 ** (state.attempt_number - 1))
        return self.jitter.uniform(ceiling / 2, ceiling)

    def _note_retry(self, state: RetryCallState) -> None:
        self.report.retries += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("collector answered %s; retrying in %.2fs", _outcome(state).problem, wait)

    async def post(self, batch: Batch) -> None:
        def give_up(state: RetryCallState) -> None:
            raise SimulationError(
                f"batch of {len(batch.events)} not accepted after {state.attempt_number} tries: "
                f"{_outcome(state).problem}"
            )

        retrying = AsyncRetrying(
            retry=retry_if_result(lambda again: again is not None),
            stop=stop_after_attempt(self.policy.max_retries + 1),
            wait=self._wait,
            before_sleep=self._note_retry,
            retry_error_callback=give_up,
        )
        await retrying(self._attempt, batch)

    async def _attempt(self, batch: Batch) -> _Again | None:
        """One POST of the batch; None when the collector answered for good (accepted or refused)."""
        report, policy = self.report, self.policy
        try:
            async with self.session.post(
                self.endpoint, data=_body(batch, policy.gzip, policy.sent_at), headers=self.headers
            ) as response:
                report.requests += 1
                report.statuses[response.status] += 1
                text = await response.text()
                if response.status < 300:
                    self._count(batch, text)
                    return None
                if response.status in (401, 403):
                    raise SimulationError(
                        f"the collector refused the write key: {response.status} {text[:200]}"
                    )
                if response.status in (429, 503):
                    return _Again(
                        f"HTTP {response.status}", _retry_after(response.headers.get("Retry-After"))
                    )
                if response.status >= 500:
                    return _Again(f"HTTP {response.status}")
                self._count(batch, text, rejected=True)
                return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            report.requests += 1
            return _Again(f"{type(exc).__name__}: {exc}")

    def _count(self, batch: Batch, text: str, rejected: bool = False) -> None:
        try:
            answer: Any = json.loads(text) if text else {}
        except ValueError:
            answer = {}
        accepted = answer.get("accepted") if isinstance(answer, dict) else None
        refused = answer.get("rejected") if isinstance(answer, dict) else None
        if isinstance(accepted, int) and isinstance(refused, int):
            self.report.accepted += accepted
            self.report.refused += refused
        elif rejected:
            self.report.refused += len(batch.events)
        else:
            self.report.accepted += len(batch.events)
        if rejected:
            self.report.rejected_batches += 1
            if any(e.malformed is None for e in batch.events):
                log.warning("collector refused a batch with valid events: %s", text[:300])


async def send_events(
    events: Sequence[SimEvent], policy: SendPolicy, progress: Progress | None = None
) -> SendReport:
    """Send the stream; returns what the collector made of it. Raises SimulationError when a
    batch cannot be delivered after every retry or the write key is refused."""
    batches = plan_batches(events, policy)
    lanes: dict[int, list[Batch]] = {}
    for batch in batches:
        lanes.setdefault(batch.lane, []).append(batch)
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    connector = aiohttp.TCPConnector(limit=policy.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        sender = _Sender(session, policy, len(events), progress)
        try:
            async with asyncio.TaskGroup() as group:
                for lane in lanes.values():
                    group.create_task(sender.lane(lane))
        except ExceptionGroup as failed:  # the other lanes were cancelled; surface the cause
            raise failed.exceptions[0] from None
        sender.report.elapsed_s = time.monotonic() - sender.start
        return sender.report
