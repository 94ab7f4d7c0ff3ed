"""Avro-shaped customer events for tests: one per event type the model types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

_PRODUCT = {
    "product_id": "p-1",
    "sku": "SKU-1",
    "name": "Blue Mug",
    "category": "kitchen",
    "price": 12.5,
    "quantity": 2,
}

PAYLOADS: dict[str, dict[str, Any]] = {
    "Products Searched": {"commerce": {"query": "mug"}},
    "Product List Viewed": {"commerce": {"list_id": "l-1", "category": "kitchen", "products": [_PRODUCT]}},
    "Product Viewed": {"commerce": {"products": [_PRODUCT]}},
    "Product Added": {"commerce": {"cart_id": "c-1", "products": [_PRODUCT]}},
    "Product Removed": {"commerce": {"cart_id": "c-1", "products": [_PRODUCT]}},
    "Cart Viewed": {"commerce": {"cart_id": "c-1", "products": [_PRODUCT]}},
    "Checkout Started": {
        "commerce": {"order_id": "o-1", "revenue": 25.0, "currency": "EUR", "products": [_PRODUCT]}
    },
    "Checkout Step Viewed": {"commerce": {"checkout_id": "k-1", "step": 2, "shipping_method": "dhl"}},
    "Order Completed": {
        "commerce": {
            "order_id": "o-1",
            "total": 30.0,
            "revenue": 25.0,
            "tax": 5.0,
            "currency": "EUR",
            "coupon": "WELCOME",
            "products": [_PRODUCT],
        }
    },
    "Order Refunded": {"commerce": {"order_id": "o-1", "total": 30.0, "currency": "EUR"}},
    "Email Sent": {"email": {"campaign_id": "cmp-1", "send_id": "s-1", "email_subject": "Hello"}},
    "Email Delivered": {"email": {"campaign_id": "cmp-1", "send_id": "s-1"}},
    "Email Opened": {"email": {"campaign_id": "cmp-1", "send_id": "s-1"}},
    "Email Link Clicked": {
        "email": {"campaign_id": "cmp-1", "send_id": "s-1", "link_url": "https://shop.example/x"}
    },
    "Email Bounced": {
        "email": {"campaign_id": "cmp-1", "send_id": "s-1", "bounce_type": "hard", "reason": "550"}
    },
    "Email Marked as Spam": {"email": {"campaign_id": "cmp-1", "send_id": "s-1"}},
    "Unsubscribed": {"email": {"campaign_id": "cmp-1", "list_id": "news"}},
    "Application Installed": {"application": {"version": "3.2.0", "build": "320"}},
    "Application Opened": {"application": {"version": "3.2.0", "from_background": True}},
    "Application Backgrounded": {"application": {}},
    "Push Notification Received": {"application": {"campaign_id": "push-1", "push_id": "n-1"}},
    "Push Notification Tapped": {
        "application": {"campaign_id": "push-1", "push_id": "n-1", "action": "open"}
    },
    "Signed Up": {"traits": {"email": "ada@example.com", "first_name": "Ada", "extra": {"vip": "true"}}},
    "Signed In": {},
    "Consent Granted": {"consent": {"purposes": ["analytics", "marketing_email"], "source": "banner"}},
    "Consent Withdrawn": {"consent": {"purposes": ["marketing_email"], "source": "preference_centre"}},
}

CHANNELS = {"Email": "email", "Application": "app", "Push": "app"}


def make_event(event: str | None = "Product Viewed", call: str = "track", **overrides: Any) -> dict[str, Any]:
    """A valid customer_event record; ``overrides`` replace top-level fields."""
    channel = next((c for prefix, c in CHANNELS.items() if event and event.startswith(prefix)), "web")
    record: dict[str, Any] = {
        "message_id": f"m-{call}-{event}",
        "type": call,
        "event": event if call == "track" else None,
        "channel": channel,
        "anonymous_id": "anon-1",
        "user_id": "cust-1" if event in ("Signed Up", "Signed In", "Order Completed") else None,
        "timestamp": T0,
        "sent_at": T0,
        "received_at": T0,
        "context": {
            "page": {"url": "https://shop.example/p/1?utm_source=news", "path": "/p/1", "title": "Mug"},
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "ip": "203.0.113.9",
            "locale": "en-GB",
        },
        "properties": {"colour": '"blue"'},
    }
    record.update(PAYLOADS.get(event or "", {}))
    record.update(overrides)
    return record
