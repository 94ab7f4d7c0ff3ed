"""What the session logic hands back: closed visits and per-event verdicts.

Outputs of ``add_event`` / ``advance`` / ``flush`` come in event-time order per device:

- ``Assignment``: an event's FINAL session id, released once the watermark has passed the event
  (no event accepted later can sort before it, so nothing can change which event starts its visit);
- ``Session``: a closed visit, matching ``schemas/session.avsc`` through ``to_record()``;
- ``LateEvent``: an event older than the watermark, not sessionized; the worker keeps it in the
  enriched events flagged late and counts it;
- ``DuplicateEvent``: an event id the device state has already taken; it changed nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.immutable import immutable
from processors.sessions.events import SessionEvent
from processors.sessions.policy import CloseRule


@immutable
class Session:
    """One closed visit of one device."""

    session_id: str
    anonymous_id: str
    customer_id: str | None
    start: datetime
    end: datetime
    duration_ms: int
    event_count: int
    page_view_count: int
    landing_page: str | None
    exit_page: str | None
    referrer_class: str | None
    referrer_host: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    channel: str | None
    device_class: str | None
    browser_family: str | None
    os_family: str | None
    first_event_id: str
    last_event_id: str
    products_viewed: tuple[str, ...]
    products_added: tuple[str, ...]
    products_bought: tuple[str, ...]
    revenue: float
    converted: bool
    bounce: bool
    closed_by: CloseRule
    # Always empty: events wait for the watermark before they are sessionized, so no provisional
    # visit is ever published that a late event could merge away (see processors/sessions/stream.py).
    merged_session_ids: tuple[str, ...] = ()
    imported: bool = False  # one of its events came through the import endpoint (history)

    def to_record(self) -> dict[str, Any]:
        """The ``io.webhouse.Session`` Avro record (timestamps as tz-aware datetimes)."""
        return {
            "session_id": self.session_id,
            "anonymous_id": self.anonymous_id,
            "customer_id": self.customer_id,
            "start": self.start,
            "end": self.end,
            "duration_ms": self.duration_ms,
            "event_count": self.event_count,
            "page_view_count": self.page_view_count,
            "landing_page": self.landing_page,
            "exit_page": self.exit_page,
            "referrer_class": self.referrer_class,
            "referrer_host": self.referrer_host,
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign,
            "utm_term": self.utm_term,
            "utm_content": self.utm_content,
            "channel": self.channel,
            "device_class": self.device_class,
            "browser_family": self.browser_family,
            "os_family": self.os_family,
            "first_event_id": self.first_event_id,
            "last_event_id": self.last_event_id,
            "products_viewed": list(self.products_viewed),
            "products_added": list(self.products_added),
            "products_bought": list(self.products_bought),
            "revenue": self.revenue,
            "converted": self.converted,
            "bounce": self.bounce,
            "closed_by": self.closed_by.value,
            "merged_session_ids": list(self.merged_session_ids),
            "imported": self.imported,
        }


@immutable
class Assignment:
    """The final session of one event; ``event`` is the input (with its payload) handed back."""

    event: SessionEvent
    session_id: str

    @property
    def event_id(self) -> str:
        return self.event.event_id


@immutable
class LateEvent:
    """An event older than the watermark (``watermark_ms``) when it arrived; not sessionized."""

    event: SessionEvent
    watermark_ms: int


@immutable
class DuplicateEvent:
    """A redelivered event id; the state is unchanged."""

    event_id: str


Output = Assignment | Session | LateEvent | DuplicateEvent
