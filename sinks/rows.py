"""Row transforms: the analyst columns each table adds to (or derives from) a record.

Pure functions of one decoded Avro record; they return zero or more output rows
(an order event gives one row per order line, a page view gives no e-mail row).
Dates are UTC calendar days as ``YYYY-MM-DD`` strings, the tables' partition keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from sinks.pii import PiiHasher

Row = dict[str, Any]
TS = pa.timestamp("us", tz="UTC")

ORDER_EVENTS = {"Order Completed": "completed", "Order Refunded": "refunded"}


def _get(record: Row | None, *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def day(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    utc = ts.astimezone(UTC)
    # isoformat is several times cheaper than strftime (a hot path: every row's partition key);
    # strftime stays for years before 1000, which it does not pad to four digits.
    return utc.date().isoformat() if utc.year >= 1000 else utc.strftime("%Y-%m-%d")


def event_time(record: Row) -> datetime:
    """Skew-corrected time from the worker, else the client's, else when the collector got it."""
    ts: datetime = (
        _get(record, "enrichment", "event_time") or record.get("timestamp") or record["received_at"]
    )
    return ts


def _campaign(record: Row) -> str | None:
    value: str | None = (
        _get(record, "enrichment", "utm_campaign")
        or _get(record, "context", "campaign", "name")
        or _get(record, "email", "campaign_name")
        or _get(record, "application", "campaign_name")
    )
    return value


def customer_id(record: Row) -> str | None:
    # Enriched records carry the worker's verdict (a refused junk user id stays None); raw ones
    # (webhouse.events_source = raw) have only the client's user id.
    enrichment = record.get("enrichment")
    value: str | None = enrichment.get("customer_id") if enrichment else record.get("user_id")
    return value


EVENT_FIELDS = (
    pa.field("event_time", TS),
    pa.field("event_date", pa.string()),
    pa.field("customer_id", pa.string()),
    pa.field("session_id", pa.string()),
    pa.field("page_path", pa.string()),
    pa.field("campaign", pa.string()),
    pa.field("is_bot", pa.bool_()),
)


def event_row(record: Row, hasher: PiiHasher) -> list[Row]:
    ts = event_time(record)
    return [
        {
            "event_time": ts,
            "event_date": day(ts),
            "customer_id": customer_id(record),
            "session_id": _get(record, "enrichment", "session_id"),
            "page_path": _get(record, "enrichment", "url_path") or _get(record, "context", "page", "path"),
            "campaign": _campaign(record),
            "is_bot": bool(_get(record, "enrichment", "is_bot")),
        }
    ]


ORDER_FIELDS = (
    pa.field("order_id", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("line_no", pa.int32()),
    pa.field("message_id", pa.string()),
    pa.field("customer_id", pa.string()),
    pa.field("anonymous_id", pa.string()),
    pa.field("session_id", pa.string()),
    pa.field("channel", pa.string()),
    pa.field("campaign", pa.string()),
    pa.field("country", pa.string()),
    pa.field("event_time", TS),
    pa.field("order_date", pa.string()),
    pa.field("currency", pa.string()),
    pa.field("product_id", pa.string()),
    pa.field("sku", pa.string()),
    pa.field("product_name", pa.string()),
    pa.field("category", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("quantity", pa.int32()),
    pa.field("amount", pa.float64()),
    pa.field("order_revenue", pa.float64()),
    pa.field("coupon", pa.string()),
)


def _property(record: Row, key: str) -> Any:
    raw = (record.get("properties") or {}).get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def order_lines(record: Row, hasher: PiiHasher) -> list[Row]:
    """One row per product of an Order Completed / Order Refunded event.

    A refund's lines are stored negative (quantity and amount) whatever sign the
    touchpoint used, so ``SUM(amount)`` is net revenue. An order without products
    gives a single line 0 carrying the order's revenue.
    """
    kind = ORDER_EVENTS.get(record.get("event") or "")
    if record.get("type") != "track" or kind is None:
        return []
    commerce = record.get("commerce") or {}
    ts = event_time(record)
    revenue = commerce.get("revenue")
    if revenue is None:
        revenue = commerce.get("total")
    country = _get(record, "enrichment", "geo_country") or _property(record, "country")
    base: Row = {
        "order_id": commerce.get("order_id") or record["message_id"],
        "kind": kind,
        "message_id": record["message_id"],
        "customer_id": customer_id(record),
        "anonymous_id": record.get("anonymous_id"),
        "session_id": _get(record, "enrichment", "session_id"),
        "channel": record.get("channel"),
        "campaign": _campaign(record),
        "country": str(country) if country is not None else None,
        "event_time": ts,
        "order_date": day(ts),
        "currency": commerce.get("currency"),
        "order_revenue": revenue,
        "coupon": commerce.get("coupon"),
    }
    refund = kind == "refunded"
    products: Sequence[Row] = commerce.get("products") or []
    if not products:
        amount = -abs(revenue) if refund and revenue is not None else revenue
        return [{**base, "line_no": 0, "amount": amount}]
    rows = []
    for i, p in enumerate(products, start=1):
        price, qty = p.get("price"), p.get("quantity")
        if refund:
            price = None if price is None else abs(price)
            qty = -abs(qty) if qty is not None else -1
        elif qty is None:
            qty = 1
        rows.append(
            {
                **base,
                "line_no": i,
                "product_id": p.get("product_id"),
                "sku": p.get("sku"),
                "product_name": p.get("name"),
                "category": p.get("category"),
                "price": price,
                "quantity": qty,
                "amount": None if price is None else price * qty,
            }
        )
    return rows


EMAIL_FIELDS = (
    pa.field("message_id", pa.string()),
    pa.field("event", pa.string()),
    pa.field("customer_id", pa.string()),
    pa.field("anonymous_id", pa.string()),
    pa.field("email_hmac", pa.string()),
    pa.field("event_time", TS),
    pa.field("event_date", pa.string()),
    pa.field("campaign_id", pa.string()),
    pa.field("campaign_name", pa.string()),
    pa.field("send_id", pa.string()),
    pa.field("email_id", pa.string()),
    pa.field("email_subject", pa.string()),
    pa.field("list_id", pa.string()),
    pa.field("link_url", pa.string()),
    pa.field("bounce_type", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("provider", pa.string()),
)


def email_interaction(record: Row, hasher: PiiHasher) -> list[Row]:
    """E-mail sent, delivered, opened, clicked, bounced, unsubscribed: the e-mail sub-record."""
    email = record.get("email")
    if email is None or record.get("type") != "track":
        return []
    ts = event_time(record)
    row: Row = {
        "message_id": record["message_id"],
        "event": record.get("event"),
        "customer_id": customer_id(record),
        "anonymous_id": record.get("anonymous_id"),
        "email_hmac": hasher.hash("email", _get(record, "traits", "email")),
        "event_time": ts,
        "event_date": day(ts),
    }
    for key in (
        "campaign_id",
        "campaign_name",
        "send_id",
        "email_id",
        "email_subject",
        "list_id",
        "link_url",
        "bounce_type",
        "reason",
        "provider",
    ):
        row[key] = email.get(key)
    return [row]


def date_of(*candidates: str, column: str) -> Any:
    """A transform adding ``column`` = UTC day of the first timestamp field present."""

    def derive(record: Row, hasher: PiiHasher) -> list[Row]:
        for name in candidates:
            value = record.get(name)
            if isinstance(value, datetime):
                return [{column: day(value)}]
        return [{column: None}]

    return derive


def dead_letter_row(record: Row, hasher: PiiHasher) -> list[Row]:
    """Dead letters keep their payload, with identifiers hashed out of the raw bytes."""
    payload: bytes = record.get("payload") or b""
    return [{"payload": hasher.redact_bytes(payload), "failed_date": day(record["failed_at"])}]
