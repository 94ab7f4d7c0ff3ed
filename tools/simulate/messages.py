"""Segment HTTP API messages, as the simulated clients would send them.

A message is a plain JSON-ready dict in Segment's camelCase (``messageId``, ``anonymousId``,
``userId``, ``timestamp``, ``context``, ``properties``, ``traits``); ``sentAt`` is left to the
sender, which stamps the wall clock at send time like Segment's libraries do, so the
processors' clock-skew correction (``received - (sent - timestamp)``) keeps the simulated
event time. Event properties use the Segment spec's snake_case.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tools.simulate.agents import ESP_LIBRARY, Device, new_uuid

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def iso(ms: int) -> str:
    """ISO-8601 with milliseconds and a Z, as analytics.js writes timestamps."""
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message of the stream plus what the simulator knows about it.

    ``key`` names the simulated actor (customer, crawler) so a sender can keep one actor's
    messages in order; ``label`` is the track event name or the call type; ``malformed`` the
    defect deliberately put in (None for a valid message)."""

    ts_ms: int
    key: str
    seq: int
    channel: str
    label: str
    body: dict[str, Any]
    malformed: str | None = None

    @property
    def sort_key(self) -> tuple[int, str, int]:
        return (self.ts_ms, self.key, self.seq)


@dataclass(slots=True)
class Recorder:
    """Collects one actor's messages, numbering them so ties in time keep their order."""

    rng: random.Random
    key: str
    events: list[SimEvent] = field(default_factory=list)

    def emit(self, ts_ms: int, channel: str, label: str, body: dict[str, Any]) -> SimEvent:
        event = SimEvent(ts_ms, self.key, len(self.events), channel, label, body)
        self.events.append(event)
        return event


def client_context(
    device: Device,
    locale: str,
    timezone: str,
    page: dict[str, Any] | None = None,
    campaign: dict[str, str] | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if device.kind == "app":
        context["app"] = device.app
        context["device"] = device.device
        context["os"] = device.os
    if campaign:
        context["campaign"] = campaign
    context["ip"] = device.ip
    context["library"] = device.library
    context["locale"] = locale
    if page is not None:
        context["page"] = page
    context["screen"] = device.screen
    context["timezone"] = timezone
    context["userAgent"] = device.user_agent
    return context


def base(
    rng: random.Random,
    call: str,
    ts_ms: int,
    channel: str,
    anonymous_id: str | None,
    user_id: str | None,
    context: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": call, "messageId": new_uuid(rng), "timestamp": iso(ts_ms)}
    if anonymous_id is not None:
        body["anonymousId"] = anonymous_id
    if user_id is not None:
        body["userId"] = user_id
    body["channel"] = channel
    body["context"] = context
    return body


def email_message(
    rng: random.Random,
    ts_ms: int,
    event: str,
    user_id: str,
    properties: dict[str, Any],
    locale: str,
) -> dict[str, Any]:
    """An e-mail event as the ESP bridge reports it: server side, keyed by the customer id."""
    context = {"library": ESP_LIBRARY, "locale": locale}
    body = base(rng, "track", ts_ms, "email", None, user_id, context)
    body["event"] = event
    body["properties"] = properties
    return body
