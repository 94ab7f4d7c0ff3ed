"""What rules see of a session, and the event names rules treat specially.

The view of an event (``pipeline.event_view.EventView``) is what travels on the internal
triggers topic, so the re-keying hop carries a few hundred bytes instead of the whole event.

Times are integer epoch milliseconds inside triggers/ (state is JSON in a state store); they
become datetimes again only at the Avro boundary.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pipeline.event_view import profile_key, to_ms
from pipeline.immutable import immutable

ORDER_EVENT = "Order Completed"
EMAIL_ENGAGEMENT = frozenset({"Email Opened", "Email Link Clicked"})
CONSENT_GRANTED = "Consent Granted"
CONSENT_WITHDRAWN = "Consent Withdrawn"


@immutable
class SessionView:
    """A closed session (schemas/session.avsc) as rules see it; times in epoch ms."""

    session_id: str
    customer_id: str
    anonymous_id: str
    start: int
    end: int
    last_event_id: str
    event_count: int = 0
    page_view_count: int = 0
    products_viewed: tuple[str, ...] = ()
    products_added: tuple[str, ...] = ()
    products_bought: tuple[str, ...] = ()
    revenue: float = 0.0
    converted: bool = False
    channel: str | None = None
    utm_campaign: str | None = None
    imported: bool = False  # one of its events came through the import endpoint (history)

    def fields(self) -> dict[str, Any]:
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _SESSION_FIELDS}  # asdict deep-copies
        for key in ("products_viewed", "products_added", "products_bought"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionView:
        values = dict(data)
        for key in ("products_viewed", "products_added", "products_bought"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


_SESSION_FIELDS = tuple(f.name for f in fields(SessionView))


def session_view(record: dict[str, Any]) -> SessionView:
    """The view of a closed Avro session dict."""
    key = profile_key(record.get("customer_id"), record["anonymous_id"])
    assert key is not None
    return SessionView(
        session_id=record["session_id"],
        customer_id=key,
        anonymous_id=record["anonymous_id"],
        start=to_ms(record["start"]) or 0,
        end=to_ms(record["end"]) or 0,
        last_event_id=record.get("last_event_id") or record["session_id"],
        event_count=int(record.get("event_count") or 0),
        page_view_count=int(record.get("page_view_count") or 0),
        products_viewed=tuple(record.get("products_viewed") or ()),
        products_added=tuple(record.get("products_added") or ()),
        products_bought=tuple(record.get("products_bought") or ()),
        revenue=float(record.get("revenue") or 0.0),
        converted=bool(record.get("converted")),
        channel=record.get("channel"),
        utm_campaign=record.get("utm_campaign"),
        imported=bool(record.get("imported")),
    )
