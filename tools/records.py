"""Hand-made records in the decoded-Avro shape the serde returns: for sink tests and benches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(
    message_id: str,
    *,
    type: str = "track",
    name: str | None = None,
    at: datetime = T0,
    anonymous_id: str | None = "anon-1",
    user_id: str | None = None,
    channel: str = "web",
    path: str | None = None,
    campaign: str | None = None,
    email: dict[str, Any] | None = None,
    commerce: dict[str, Any] | None = None,
    consent: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    session_id: str | None = None,
    customer_id: str | None = None,
    ip: str | None = None,
    properties: dict[str, str] | None = None,
    session_key: str | None = None,
    is_late: bool = False,
) -> dict[str, Any]:
    """A customer_event record; ``session_id``/``session_key``/``customer_id``/``is_late`` fill the
    enrichment sub-record (the worker sends an event on with its session key, no session id)."""
    enrichment = None
    if session_id is not None or customer_id is not None or session_key is not None or is_late:
        enrichment = {
            "event_time": at,
            "customer_id": customer_id or user_id,
            "session_id": session_id,
            "is_bot": False,
            "is_late": is_late,
            "url_path": path,
            "utm_campaign": campaign,
            "session_key": session_key,
        }
    return {
        "message_id": message_id,
        "type": type,
        "event": name if type == "track" else None,
        "name": name if type in ("page", "screen") else None,
        "channel": channel,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "timestamp": at,
        "received_at": at + timedelta(seconds=1),
        "context": {
            "page": {"path": path} if path else None,
            "campaign": {"name": campaign} if campaign else None,
            "ip": ip,
        },
        "traits": traits,
        "email": email,
        "commerce": commerce,
        "consent": consent,
        "properties": properties or {},
        "enrichment": enrichment,
    }


def order(
    message_id: str,
    order_id: str,
    lines: list[tuple[str, float, int]],
    *,
    refund: bool = False,
    **kw: Any,
) -> dict[str, Any]:
    products = [{"product_id": p, "price": price, "quantity": q} for p, price, q in lines]
    revenue = sum(price * q for _, price, q in lines)
    return event(
        message_id,
        name="Order Refunded" if refund else "Order Completed",
        commerce={"order_id": order_id, "revenue": revenue, "currency": "GBP", "products": products},
        **kw,
    )


def session(
    session_id: str, anonymous_id: str, start: datetime, minutes: int = 10, **kw: Any
) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "anonymous_id": anonymous_id,
        "customer_id": kw.pop("customer_id", None),
        "start": start,
        "end": start + timedelta(minutes=minutes),
        "duration_ms": minutes * 60_000,
        "event_count": kw.pop("event_count", 3),
        "page_view_count": kw.pop("page_view_count", 2),
        "first_event_id": f"{session_id}-first",
        "last_event_id": f"{session_id}-last",
        "merged_session_ids": kw.pop("merged_session_ids", []),
        **kw,
    }


def link(anonymous_id: str, customer_id: str, at: datetime = T0) -> dict[str, Any]:
    return {
        "anonymous_id": anonymous_id,
        "customer_id": customer_id,
        "first_seen": at,
        "last_seen": at,
        "source_event_id": f"identify-{anonymous_id}",
        "source_type": "identify",
    }
