"""The saveable per-device state: a reorder buffer, the one open visit, a little memory.

It lives in a state store with a changelog, so it must be small and serialise cheaply: events wait
in ``buffer`` only until the partition watermark passes them (about the allowed lateness of event
time), and a visit is kept as running aggregates, never as its list of events.

``to_dict``/``from_dict`` give JSON-able dicts, ``to_bytes``/``from_bytes`` compact JSON bytes.
The worker saves the buffer apart, an event a record (``processors.worker.waiting``), so a device
record does not grow with the events waiting in it.
The stream functions mutate a state in place and hand it back (no copy per event); treat a state
passed to them as consumed.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pipeline import fast_json
from pipeline.errors import ProcessingError
from pipeline.fingerprint import id_fingerprint
from processors.sessions.events import CampaignKey, SessionEvent
from processors.sessions.policy import CloseRule, from_ms

# 2: the duplicate memory keeps fingerprints of the ids (``seen``); 1 kept the ids (``recent``).
STATE_VERSION = 2
_JSON = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps would build one per call
NO_WATERMARK = -(2**62)


@dataclass(slots=True)
class OpenSession:
    """Running aggregates of the visit being built from released events."""

    session_id: str
    start_ms: int
    last_ms: int
    first_event_id: str
    last_event_id: str
    midnight_ms: int | None  # first instant of the next local day (midnight split on), else None
    customer_id: str | None
    referrer_class: str | None
    referrer_host: str | None
    event_count: int = 0
    page_view_count: int = 0
    landing_page: str | None = None
    exit_page: str | None = None
    campaign: CampaignKey | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    channel: str | None = None
    device_class: str | None = None
    browser_family: str | None = None
    os_family: str | None = None
    products_viewed: dict[str, None] = field(default_factory=dict)
    products_added: dict[str, None] = field(default_factory=dict)
    products_bought: dict[str, None] = field(default_factory=dict)
    revenue: float = 0.0
    converted: bool = False
    order_ids: dict[str, None] = field(default_factory=dict)  # orders whose revenue is counted
    imported: bool = False  # one of its events came through the import endpoint
    # Derived from the policy, cached between events; not saved (None: compute again).
    boundary_ms: int | None = field(default=None, compare=False)
    boundary_rule: CloseRule = field(default=CloseRule.INACTIVITY, compare=False)

    def to_list(self) -> list[Any]:
        return [
            self.session_id,
            self.start_ms,
            self.last_ms,
            self.first_event_id,
            self.last_event_id,
            self.midnight_ms,
            self.customer_id,
            self.referrer_class,
            self.referrer_host,
            self.event_count,
            self.page_view_count,
            self.landing_page,
            self.exit_page,
            list(self.campaign) if self.campaign is not None else None,
            self.utm_term,
            self.utm_content,
            self.channel,
            self.device_class,
            self.browser_family,
            self.os_family,
            list(self.products_viewed),
            list(self.products_added),
            list(self.products_bought),
            self.revenue,
            self.converted,
            list(self.order_ids),
            self.imported,
        ]

    @classmethod
    def from_list(cls, row: list[Any]) -> OpenSession:
        campaign = row[13]
        return cls(
            session_id=row[0],
            start_ms=row[1],
            last_ms=row[2],
            first_event_id=row[3],
            last_event_id=row[4],
            midnight_ms=row[5],
            customer_id=row[6],
            referrer_class=row[7],
            referrer_host=row[8],
            event_count=row[9],
            page_view_count=row[10],
            landing_page=row[11],
            exit_page=row[12],
            campaign=(campaign[0], campaign[1], campaign[2]) if campaign is not None else None,
            utm_term=row[14],
            utm_content=row[15],
            channel=row[16],
            device_class=row[17],
            browser_family=row[18],
            os_family=row[19],
            products_viewed=dict.fromkeys(row[20]),
            products_added=dict.fromkeys(row[21]),
            products_bought=dict.fromkeys(row[22]),
            revenue=row[23],
            converted=row[24],
            order_ids=dict.fromkeys(row[25]) if len(row) > 25 else {},  # states saved before order ids
            imported=bool(row[26]) if len(row) > 26 else False,  # states saved before the flag
        )


def event_to_list(event: SessionEvent) -> list[Any]:
    return [
        event.event_id,
        event.time_ms,
        event.customer_id,
        event.call_type,
        event.event_name,
        event.is_page_view,
        event.page,
        event.referrer_class,
        event.referrer_host,
        event.utm_source,
        event.utm_medium,
        event.utm_campaign,
        event.utm_term,
        event.utm_content,
        event.channel,
        event.device_class,
        event.browser_family,
        event.os_family,
        list(event.products_viewed),
        list(event.products_added),
        list(event.products_bought),
        event.revenue,
        base64.b64encode(event.payload).decode("ascii") if event.payload is not None else None,
        event.order_id,
        event.imported,
    ]


def event_from_list(device_id: str, row: list[Any]) -> SessionEvent:
    return SessionEvent(
        event_id=row[0],
        device_id=device_id,
        event_time=from_ms(row[1]),
        customer_id=row[2],
        call_type=row[3],
        event_name=row[4],
        is_page_view=row[5],
        page=row[6],
        referrer_class=row[7],
        referrer_host=row[8],
        utm_source=row[9],
        utm_medium=row[10],
        utm_campaign=row[11],
        utm_term=row[12],
        utm_content=row[13],
        channel=row[14],
        device_class=row[15],
        browser_family=row[16],
        os_family=row[17],
        products_viewed=tuple(row[18]),
        products_added=tuple(row[19]),
        products_bought=tuple(row[20]),
        revenue=row[21],
        payload=base64.b64decode(row[22]) if row[22] is not None else None,
        order_id=row[23] if len(row) > 23 else None,  # states saved before order ids
        imported=bool(row[24]) if len(row) > 24 else False,  # states saved before the flag
    )


@dataclass(slots=True)
class DeviceState:
    """Everything kept between events of one device (anonymous id)."""

    device_id: str
    watermark_ms: int = NO_WATERMARK  # the highest watermark applied; events below it are late
    buffer: list[SessionEvent] = field(default_factory=list)  # unreleased, by (time_ms, event_id)
    current: OpenSession | None = None
    last_customer_id: str | None = None
    # The duplicate memory: fingerprints (``pipeline.fingerprint``) of the last ids taken or
    # reported late, oldest first, and the same as a set for its lookups.
    recent_seen: deque[str] = field(default_factory=deque)
    known_seen: set[str] = field(default_factory=set)

    def to_dict(self, with_buffer: bool = True) -> dict[str, Any]:
        """``with_buffer=False``: the waiting events are saved apart, each once (the worker's
        ``waiting`` store), so this record stays small however many events wait."""
        data = {
            "v": STATE_VERSION,
            "device": self.device_id,
            "wm": self.watermark_ms,
            "cur": self.current.to_list() if self.current is not None else None,
            "cid": self.last_customer_id,
            "seen": list(self.recent_seen),
        }
        if with_buffer:
            data["buf"] = [event_to_list(event) for event in self.buffer]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceState:
        version = data.get("v")
        if version == STATE_VERSION:
            recent = deque(data["seen"])
        elif version == 1:  # stored before the fingerprints: the ids themselves
            recent = deque(map(id_fingerprint, data["recent"]))
        else:
            raise ProcessingError("sessions", f"unknown session state version {version!r}")
        device_id = data["device"]
        buffer = [event_from_list(device_id, row) for row in data.get("buf", ())]
        return cls(
            device_id=device_id,
            watermark_ms=data["wm"],
            buffer=buffer,
            current=OpenSession.from_list(data["cur"]) if data["cur"] is not None else None,
            last_customer_id=data["cid"],
            recent_seen=recent,
            known_seen=set(recent),
        )

    def to_bytes(self) -> bytes:
        return _JSON.encode(self.to_dict()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceState:
        try:
            decoded = fast_json.loads(data)
        except ValueError as exc:
            raise ProcessingError("sessions", f"unreadable session state: {exc}") from exc
        return cls.from_dict(decoded)

    @property
    def is_idle(self) -> bool:
        """Nothing waits and no visit is open: only the duplicate memory is left."""
        return not self.buffer and self.current is None
