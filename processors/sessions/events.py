"""What sessionization needs to know about one event, and the deterministic session id.

The worker maps each enriched, non-bot event with a session key to a ``SessionEvent``; this
package never sees Avro. Events are ordered by ``(time_ms, event_id)`` everywhere, so two events in
the same millisecond still have one agreed order and replays cut the same visits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import field
from datetime import datetime

from pipeline.errors import ValidationError
from pipeline.immutable import immutable
from processors.sessions.policy import to_ms

ORDER_COMPLETED = "Order Completed"

CampaignKey = tuple[str | None, str | None, str | None]

# What a visit lists of its products (viewed, added, bought) and remembers of its orders: the first
# VISIT_IDS_MAX distinct ids of each, none longer than VISIT_ID_CHARS_MAX. Unbounded, a crawler
# taken for a browser (60,000 products in an hour) made the open visit in the device's record, and
# the visit record, larger than Kafka takes in one record (1,000,000 bytes): the step failed, and
# again after each restart. Bounded, the four take at most about 4 x 131 KB. The events keep all.
VISIT_IDS_MAX = 1_000
VISIT_ID_CHARS_MAX = 128


def keep_ids(kept: dict[str, None], new: Iterable[str]) -> None:
    """Add ``new`` to ``kept`` in order, each once, within the bounds above."""
    for value in new:
        if len(kept) >= VISIT_IDS_MAX:
            return
        if len(value) <= VISIT_ID_CHARS_MAX:
            kept[value] = None


@immutable
class SessionEvent:
    """One event of one device, as the session logic sees it.

    ``payload`` is opaque to this package: whatever the caller wants back with the event's session
    assignment. It is kept in the device state while the event waits for the watermark, so leave
    it None when the event can go on at once (the worker does: it emits each event on arrival).
    """

    event_id: str
    device_id: str  # the session key: the anonymous id, else the user id (docs/identity.md)
    event_time: datetime  # tz-aware; the corrected event time from enrichment
    customer_id: str | None = None
    call_type: str = "track"  # Segment call type: track, page, screen, identify, ...
    event_name: str | None = None  # track event name, e.g. "Order Completed"
    is_page_view: bool = False  # page or screen call
    page: str | None = None  # URL path (without tracking parameters) of the page the event is on
    referrer_class: str | None = None  # direct, search, social, email, internal, other
    referrer_host: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    channel: str | None = None  # web, app, email, server
    device_class: str | None = None
    browser_family: str | None = None
    os_family: str | None = None
    products_viewed: tuple[str, ...] = ()
    products_added: tuple[str, ...] = ()
    products_bought: tuple[str, ...] = ()
    revenue: float | None = None  # order revenue; set on Order Completed only
    order_id: str | None = None  # the order's business key: a visit counts each order's revenue once
    imported: bool = False  # sent through the import endpoint: history, not live traffic
    payload: bytes | None = None
    time_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.event_time.tzinfo is None or self.event_time.utcoffset() is None:
            raise ValidationError("naive_event_time", f"event {self.event_id}: event time has no time zone")
        object.__setattr__(self, "time_ms", to_ms(self.event_time))

    @property
    def campaign(self) -> CampaignKey | None:
        """(utm source, medium, campaign), or None for an event without a campaign (direct)."""
        if self.utm_source is None and self.utm_medium is None and self.utm_campaign is None:
            return None
        return (self.utm_source, self.utm_medium, self.utm_campaign)

    @property
    def is_order_completed(self) -> bool:
        return self.call_type == "track" and self.event_name == ORDER_COMPLETED


def session_id_for(device_id: str, first_time_ms: int, first_event_id: str) -> str:
    """Deterministic session id: the same first event of the same device gives the same id."""
    digest = hashlib.blake2b(
        f"{device_id}\x1f{first_time_ms}\x1f{first_event_id}".encode(), digest_size=16
    ).hexdigest()
    return digest
