"""Webhook signing and verification; retries with backoff against a loopback receiver."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from pipeline.errors import SignatureError
from triggers.alerts import Alert
from triggers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    RetryPolicy,
    WebhookSender,
    body_of,
    sign,
    verify,
)

from .builders import at, consent, harness, order
from .receiver import Receiver

SECRET = "s3cret"


@pytest.fixture
def alert() -> Alert:
    h = harness("first_purchase_welcome")
    h.event(consent(at(0)))
    [fired] = h.event(order(at(1)))
    return fired


def headers_for(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(secret, timestamp, body), TIMESTAMP_HEADER: str(timestamp)}


def test_verify_accepts_a_fresh_signed_body(alert: Alert) -> None:
    body = body_of(alert)
    verify(SECRET, body, headers_for(body, 1_000_000), now=1_000_010)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b, h: (b.replace(b"c-1", b"c-2"), h), "does not match"),
        (lambda b, h: (b, {**h, TIMESTAMP_HEADER: "1000001"}), "does not match"),
        (lambda b, h: (b, headers_for(b, 1_000_000, "other")), "does not match"),
        (lambda b, h: (b, headers_for(b, 1_000_000 - 400)), "more than 300s"),
        (lambda b, h: (b, {SIGNATURE_HEADER: h[SIGNATURE_HEADER]}), "missing"),
        (lambda b, h: (b, {**h, TIMESTAMP_HEADER: "yesterday"}), "not unix seconds"),
    ],
)
def test_verify_refuses_tampering_and_replays(
    alert: Alert, tamper: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]], message: str
) -> None:
    body = body_of(alert)
    bad_body, bad_headers = tamper(body, headers_for(body, 1_000_000))
    with pytest.raises(SignatureError, match=message):
        verify(SECRET, bad_body, bad_headers, now=1_000_000)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=1.0, max_s=8.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        delays = {policy.delay(attempt, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


def deliver(
    alert: Alert, urls: list[str], policy: RetryPolicy
) -> tuple[list[Delivery], list[float], list[str | None]]:
    sleeps: list[float] = []
    attempts: list[str | None] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def run() -> list[Delivery]:
        async with aiohttp.ClientSession() as session:
            sender = WebhookSender(
                urls, SECRET, policy, session, sleep=fake_sleep, rng=random.Random(3),
                on_attempt=lambda seconds, reason: attempts.append(reason),
            )  # fmt: skip
            return await sender.deliver(alert)

    return asyncio.run(run()), sleeps, attempts


def test_delivery_is_signed_and_verified_by_the_receiver(alert: Alert, receiver: Receiver) -> None:
    [result], sleeps, _ = deliver(alert, [receiver.url], RetryPolicy())
    assert (result.ok, result.attempts, result.status) == (True, 1, 200)
    [got] = receiver.requests
    assert got.verified and got.alert_id == alert.alert_id
    assert got.body["rule_id"] == "first_purchase_welcome"
    assert got.body["reasons"] == [{"condition": "profile.orders eq 1", "actual": 1}]
    assert sleeps == []


def test_retries_5xx_with_backoff_then_succeeds(alert: Alert, receiver: Receiver) -> None:
    receiver.fail_first = 2
    [result], sleeps, attempts = deliver(alert, [receiver.url], RetryPolicy(max_attempts=5, base_s=0.2))
    assert (result.ok, result.attempts) == (True, 3)
    assert attempts == ["http_503", "http_503", None]
    assert len(sleeps) == 2 and 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4
    assert len(receiver.requests) == 1


def test_gives_up_after_max_attempts(alert: Alert, receiver: Receiver) -> None:
    receiver.fail_first = 10
    [result], sleeps, _ = deliver(alert, [receiver.url], RetryPolicy(max_attempts=3))
    assert (result.ok, result.attempts, result.error) == (False, 3, "http_503")
    assert len(sleeps) == 2


def test_a_4xx_is_final(alert: Alert, receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 10, 400
    [result], sleeps, _ = deliver(alert, [receiver.url], RetryPolicy(max_attempts=5))
    assert (result.ok, result.attempts, result.error) == (False, 1, "http_400")
    assert sleeps == []


def test_timeouts_are_retried(alert: Alert, receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status, receiver.hang_s = 1, 0, 0.8
    [result], _, attempts = deliver(alert, [receiver.url], RetryPolicy(max_attempts=2, timeout_s=0.2))
    assert (result.ok, attempts) == (True, ["timeout", None])


def test_connection_refused_is_retried_then_reported(alert: Alert) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    [result], _, _ = deliver(alert, [url], RetryPolicy(max_attempts=2))
    assert (result.ok, result.attempts, result.error) == (False, 2, "connect")


def test_every_attempt_carries_the_alert_id_as_idempotency_key(alert: Alert, receiver: Receiver) -> None:
    """At least once: a retried POST and a second delivery of the same alert (a replay after a
    crash) carry the same key, so the receiver can act once."""
    receiver.fail_first = 2
    deliver(alert, [receiver.url], RetryPolicy(max_attempts=5, base_s=0.01))
    deliver(alert, [receiver.url], RetryPolicy(max_attempts=5, base_s=0.01))
    assert receiver.keys == [alert.alert_id] * 4
    assert [r.alert_id for r in receiver.requests] == [alert.alert_id] * 2
