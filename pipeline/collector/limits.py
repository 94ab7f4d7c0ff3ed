"""Limits on one event's shape and time, checked without recursion.

A JSON document nested hundreds of levels deep passes the size limit but makes every
recursive step after parsing (mapping, ``json.dumps``, Avro) raise ``RecursionError``, a
500 that Segment clients retry for ever. So the shape is measured first, with an explicit
stack, and an event past ``max_event_depth`` levels or ``max_event_keys`` object members is
refused with its own reason (``too_deep``, ``too_many_keys``) and dead-lettered, its
payload written by ``dump_json`` which needs no recursion either.

Event time: a client time outside ``[min_event_time, received_at + max_event_future_s]`` is
refused as ``invalid_timestamp``. What is checked is the time the pipeline will use (see
``effective_event_time``), not the raw client clock: a phone whose clock reset to 1970 sends
``timestamp`` and ``sentAt`` from the same wrong clock, and the skew correction still
places the event right.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.errors import ValidationError
from pipeline.immutable import immutable
from pipeline.settings import CollectorSettings

DEFAULT_MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
CUT_MARK = "\x00webhouse-cut:"  # stands for a sub-tree ``cut_deep`` took out of the body
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


@immutable
class EventLimits:
    max_depth: int = 32
    max_keys: int = 1000
    min_event_time: datetime = DEFAULT_MIN_EVENT_TIME
    max_future: timedelta = timedelta(days=1)

    @classmethod
    def from_settings(cls, collector: CollectorSettings) -> EventLimits:
        return cls(
            collector.max_event_depth,
            collector.max_event_keys,
            collector.min_event_time,
            timedelta(seconds=collector.max_event_future_s),
        )


def cut_deep(data: bytes, depth: int) -> tuple[bytes, tuple[bytes, ...]]:
    """The JSON text with every container deeper than ``depth`` replaced by a ``CUT_MARK``
    string, and the cut texts. For bodies too deep for ``json.loads``: what remains parses,
    events holding a mark are refused as ``too_deep``, and their dead letters put the cut text
    back (``dead_letter_payload``). A scan over the string and bracket tokens, no recursion."""
    out: list[bytes] = []
    cuts: list[bytes] = []
    level, kept_to, start = 0, 0, -1
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token[:1] == b'"':
            continue
        if token in (b"[", b"{"):
            level += 1
            if level == depth + 1:
                start = match.start()
        else:
            if level == depth + 1 and start >= 0:
                cuts.append(data[start : match.end()])
                out += [data[kept_to:start], json.dumps(f"{CUT_MARK}{len(cuts) - 1}").encode()]
                kept_to, start = match.end(), -1
            level -= 1
    out.append(data[kept_to:])
    return b"".join(out), tuple(cuts)


def check_shape(raw: Any, limits: EventLimits, cut: bool = False) -> None:
    """Raise ``too_deep`` / ``too_many_keys`` for an event past the limits; iterative.
    ``cut``: the body went through ``cut_deep``, so a ``CUT_MARK`` string means too deep."""
    keys = 0
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if cut and isinstance(value, str) and value.startswith(CUT_MARK):
            raise ValidationError("too_deep", f"the event nests deeper than {limits.max_depth} levels")
        if isinstance(value, dict):
            children: Any = value.values()
            keys += len(value)
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limits.max_depth:
            raise ValidationError("too_deep", f"the event nests deeper than {limits.max_depth} levels")
        if keys > limits.max_keys:
            raise ValidationError("too_many_keys", f"the event has more than {limits.max_keys} object keys")
        stack.extend((child, depth + 1) for child in children)


def effective_event_time(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """The event time the enrichment will derive (processors.enrichment.clock, same rule)."""
    if timestamp is not None and sent_at is not None:
        return received_at - max(sent_at - timestamp, timedelta(0))
    return timestamp if timestamp is not None else received_at


def check_event_time(record: dict[str, Any], limits: EventLimits) -> None:
    received = record["received_at"]
    when = effective_event_time(record["timestamp"], record["sent_at"], received)
    latest = received + limits.max_future
    if when < limits.min_event_time or when > latest:
        raise ValidationError(
            "invalid_timestamp",
            f"event time {when.isoformat()} is outside [{limits.min_event_time.isoformat()}, "
            f"{latest.isoformat()}]",
        )


class _Token(str):
    """Already-encoded JSON text on the encoder's stack."""


def dead_letter_payload(raw: Any, cuts: tuple[bytes, ...] = ()) -> bytes:
    """What a dead letter keeps of a refused event: all of it, whatever its depth, as UTF-8
    (a lone surrogate from a ``\\udXXX`` escape is written as that escape), with the parts
    ``cut_deep`` took out put back."""
    text = dump_json(raw).encode("utf-8", "backslashreplace")
    if not cuts:
        return text
    mark = re.escape(json.dumps(CUT_MARK).encode()[:-1])

    def back(match: re.Match[bytes]) -> bytes:
        index = int(match.group(1))
        return cuts[index] if index < len(cuts) else match.group(0)

    return re.sub(mark + rb'(\d+)"', back, text)


def dump_json(value: Any) -> str:
    """``canonical_json`` for any depth: same text, an explicit stack instead of recursion."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            out.append(item)
        elif isinstance(item, dict):
            stack.append(_Token("}"))
            entries = sorted(item.items(), key=lambda kv: str(kv[0]))
            for i, (key, child) in reversed(list(enumerate(entries))):
                stack.append(child)
                stack.append(_Token(("," if i else "") + json.dumps(str(key), ensure_ascii=False) + ":"))
            out.append("{")
        elif isinstance(item, list):
            stack.append(_Token("]"))
            for i, child in reversed(list(enumerate(item))):
                stack.append(child)
                if i:
                    stack.append(_Token(","))
            out.append("[")
        else:
            out.append(json.dumps(item, ensure_ascii=False))
    return "".join(out)
