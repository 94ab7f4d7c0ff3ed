"""Mailgun's event webhook: signature check and mapping to our e-mail events.

Mailgun posts one JSON object per event: ``{"signature": {"timestamp", "token",
"signature"}, "event-data": {...}}``. The signature is the hex HMAC-SHA256, keyed
with the domain's webhook signing key, of ``timestamp + token``. We check it in
constant time, refuse timestamps too far from now (a captured request cannot be
replayed later) and remember recent tokens with their body (nor replayed now).

Who the recipient is in *our* terms (customer id) and which campaign/send it was
come from the custom variables the sender attached (``X-Mailgun-Variables``), which
Mailgun echoes back in ``event-data.user-variables``: keys ``customer_id``,
``campaign_id``, ``campaign_name``, ``send_id``. Without a customer id the event is
still kept, under an anonymous id that is a hash of the recipient address (the address
itself never enters the event).

Mapping (Segment e-mail spec names): delivered -> Email Delivered, failed ->
Email Bounced (permanent: hard, temporary: soft), complained -> Email Marked as
Spam, unsubscribed -> Unsubscribed, opened -> Email Opened, clicked -> Email Link
Clicked, accepted -> Email Sent. Other event kinds are acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import ValidationError

PROVIDER = "mailgun"

EVENT_NAMES = {
    "accepted": "Email Sent",
    "delivered": "Email Delivered",
    "failed": "Email Bounced",
    "complained": "Email Marked as Spam",
    "unsubscribed": "Unsubscribed",
    "opened": "Email Opened",
    "clicked": "Email Link Clicked",
}


def signature_of(signing_key: str, timestamp: str, token: str) -> str:
    """What Mailgun sends as ``signature.signature`` (also used by tests and the docs)."""
    return hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


class ReplayGuard:
    """Tokens of recently accepted webhooks, with a digest of the body each one signed for.

    Mailgun's signature covers only timestamp and token, not the body: a captured request's
    signature could be reused on a forged body within the freshness window. A token seen
    again with the same body is Mailgun retrying (``duplicate``: acknowledged, not produced
    twice); with another body it is a forgery (``replayed``). Tokens are remembered only
    once their events were produced, so a retry after a failed produce is accepted.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()

    def check(self, token: str, body_digest: str) -> bool:
        """True for a new token, False for a duplicate; ValidationError for a replay."""
        known = self._seen.get(token)
        if known is None:
            return True
        if known != body_digest:
            raise ValidationError("replayed", "this webhook signature was already used for another body")
        return False

    def remember(self, token: str, body_digest: str) -> None:
        self._seen[token] = body_digest
        self._seen.move_to_end(token)
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


def verify(body: Any, signing_key: str, now: datetime, max_age_s: float) -> str:
    """The token of a payload carrying a valid, fresh signature; ValidationError otherwise."""
    if not signing_key:
        raise ValidationError("not_configured", "no Mailgun webhook signing key is configured")
    sig = body.get("signature") if isinstance(body, dict) else None
    if not isinstance(sig, dict):
        raise ValidationError("bad_signature", "payload has no signature object")
    timestamp, token, given = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and given):
        raise ValidationError("bad_signature", "signature needs timestamp, token and signature")
    if not hmac.compare_digest(signature_of(signing_key, timestamp, token), given.lower()):
        raise ValidationError("bad_signature", "Mailgun signature does not match")
    try:
        signed_at = float(timestamp)
    except ValueError as exc:
        raise ValidationError("bad_signature", f"timestamp {timestamp!r} is not a number") from exc
    if abs(now.timestamp() - signed_at) > max_age_s:
        raise ValidationError("stale_signature", f"signed at {timestamp}, more than {max_age_s:.0f}s away")
    return token


def body_digest(event_data: Any) -> str:
    return _digest(json.dumps(event_data, sort_keys=True, separators=(",", ":"), default=str))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def to_message(event_data: dict[str, Any]) -> dict[str, Any] | None:
    """The Segment-shaped track message for one Mailgun event, or None for kinds we ignore."""
    kind = event_data.get("event")
    name = EVENT_NAMES.get(kind) if isinstance(kind, str) else None
    if name is None:
        return None
    variables = event_data.get("user-variables")
    variables = variables if isinstance(variables, dict) else {}
    headers = (event_data.get("message") or {}).get("headers") or {}
    recipient = _str(event_data.get("recipient"))
    try:
        ts = datetime.fromtimestamp(float(event_data["timestamp"]), tz=UTC)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError("bad_event", "Mailgun event has no numeric timestamp") from exc
    properties: dict[str, Any] = {
        "campaign_id": _str(variables.get("campaign_id")),
        "campaign_name": _str(variables.get("campaign_name")),
        "send_id": _str(variables.get("send_id")),
        "email_id": _str(headers.get("message-id")),
        "email_subject": _str(headers.get("subject")),
        "provider": PROVIDER,
    }
    if kind == "clicked":
        properties["link_url"] = _str(event_data.get("url"))
    if kind == "failed":
        properties["bounce_type"] = "hard" if event_data.get("severity") == "permanent" else "soft"
        status = event_data.get("delivery-status") or {}
        properties["reason"] = _str(event_data.get("reason")) or _str(status.get("description"))
    message: dict[str, Any] = {
        "type": "track",
        "event": name,
        # Mailgun's event id is unique per event: retried webhooks keep the same message id.
        "messageId": f"{PROVIDER}-{event_data.get('id') or _digest(repr(event_data))}",
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "channel": "email",
        "properties": {k: v for k, v in properties.items() if v is not None},
        "context": {"channel": "email", "library": {"name": "webhouse-mailgun-webhook", "version": "1"}},
    }
    customer_id = _str(variables.get("customer_id"))
    if customer_id:
        message["userId"] = customer_id
    elif recipient:
        message["anonymousId"] = "email-" + _digest(recipient.lower())
    else:
        raise ValidationError("bad_event", "Mailgun event names neither customer_id nor recipient")
    return message
