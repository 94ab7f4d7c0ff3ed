"""Mailgun webhook: signature check and the mapping to our e-mail events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.collector import mailgun
from pipeline.errors import ValidationError

KEY = "key-0123456789abcdef"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def signed(
    event_data: dict[str, Any], key: str = KEY, at: datetime = NOW, token: str = "t" * 50
) -> dict[str, Any]:
    ts = str(int(at.timestamp()))
    return {
        "signature": {"timestamp": ts, "token": token, "signature": mailgun.signature_of(key, ts, token)},
        "event-data": event_data,
    }


def event(kind: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": kind,
        "id": f"id-{kind}",
        "timestamp": 1795435200.25,
        "recipient": "Ann@Example.com",
        "message": {"headers": {"message-id": "m-1@mg.shop.example", "subject": "Winter sale"}},
        "user-variables": {"customer_id": "cust-9", "campaign_id": "cmp-42", "send_id": "send-7"},
    }
    data.update(extra)
    return data


def test_valid_signature_passes() -> None:
    assert mailgun.verify(signed(event("delivered"), token="tok-1"), KEY, NOW, 900) == "tok-1"


def test_replay_guard_tells_retries_from_forgeries() -> None:
    guard = mailgun.ReplayGuard(capacity=2)
    delivered = mailgun.body_digest(event("delivered"))
    assert guard.check("tok-1", delivered) is True  # new
    guard.remember("tok-1", delivered)
    assert guard.check("tok-1", delivered) is False  # Mailgun retrying the same body
    with pytest.raises(ValidationError) as info:  # same signature, another body
        guard.check("tok-1", mailgun.body_digest(event("unsubscribed")))
    assert info.value.reason == "replayed"
    guard.remember("tok-2", delivered)
    guard.remember("tok-3", delivered)
    assert guard.check("tok-1", "x") is True  # forgotten past capacity (the age check covers it)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (signed(event("delivered"), key="key-wrong"), "bad_signature"),
        ({"event-data": event("delivered")}, "bad_signature"),
        ({"signature": {"timestamp": "1", "token": "x"}}, "bad_signature"),
        ("not an object", "bad_signature"),
        (signed(event("delivered"), at=datetime(2026, 11, 23, 11, 0, tzinfo=UTC)), "stale_signature"),
    ],
)
def test_bad_signatures_are_refused(body: Any, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        mailgun.verify(body, KEY, NOW, 900)
    assert info.value.reason == reason


def test_no_key_configured_refuses_everything() -> None:
    with pytest.raises(ValidationError) as info:
        mailgun.verify(signed(event("delivered")), "", NOW, 900)
    assert info.value.reason == "not_configured"


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("accepted", "Email Sent"),
        ("delivered", "Email Delivered"),
        ("failed", "Email Bounced"),
        ("complained", "Email Marked as Spam"),
        ("unsubscribed", "Unsubscribed"),
        ("opened", "Email Opened"),
        ("clicked", "Email Link Clicked"),
    ],
)
def test_event_kinds_map_to_email_events(kind: str, name: str) -> None:
    message = mailgun.to_message(event(kind))
    assert message is not None
    assert message["event"] == name
    assert message["type"] == "track"
    assert message["userId"] == "cust-9"
    assert message["channel"] == "email"
    assert message["messageId"] == f"mailgun-id-{kind}"
    assert message["timestamp"] == "2026-11-23T12:00:00.250000Z"
    props = message["properties"]
    assert props["campaign_id"] == "cmp-42"
    assert props["send_id"] == "send-7"
    assert props["email_id"] == "m-1@mg.shop.example"
    assert props["email_subject"] == "Winter sale"
    assert props["provider"] == "mailgun"


def test_bounce_severity_and_reason() -> None:
    hard = mailgun.to_message(event("failed", severity="permanent", reason="bounce"))
    soft = mailgun.to_message(
        event("failed", severity="temporary", **{"delivery-status": {"description": "mailbox full"}})
    )
    assert hard is not None and soft is not None
    assert (hard["properties"]["bounce_type"], hard["properties"]["reason"]) == ("hard", "bounce")
    assert (soft["properties"]["bounce_type"], soft["properties"]["reason"]) == ("soft", "mailbox full")


def test_click_keeps_url() -> None:
    message = mailgun.to_message(event("clicked", url="https://shop.example/sale"))
    assert message is not None
    assert message["properties"]["link_url"] == "https://shop.example/sale"


def test_without_customer_id_the_recipient_gives_a_stable_pseudonymous_id() -> None:
    a = mailgun.to_message(event("opened", **{"user-variables": {}}))
    b = mailgun.to_message(event("opened", recipient="ann@example.com", **{"user-variables": {}}))
    assert a is not None and b is not None
    assert "userId" not in a
    assert a["anonymousId"] == b["anonymousId"]
    assert "ann" not in a["anonymousId"].lower()


def test_unknown_kinds_are_ignored_and_missing_timestamp_is_an_error() -> None:
    assert mailgun.to_message(event("stored")) is None
    with pytest.raises(ValidationError):
        mailgun.to_message({"event": "opened", "recipient": "a@b.c"})
