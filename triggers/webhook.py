"""Alert delivery to webhooks: signed JSON POSTs, retried with backoff and jitter.

The request, for receivers::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <alert id>              deduplicate by it: delivery is at least once
    X-Webhouse-Alert-Id: <alert id>          the same, under the project's own name
    X-Webhouse-Timestamp: <unix seconds>     when this attempt was signed
    X-Webhouse-Signature: v1=<hex>           HMAC-SHA256(secret, "<timestamp>." + body)

    {"alert_id": ..., "rule_id": ..., "customer_id": ..., "time": "2026-11-02T10:05:00+00:00",
     "reasons": [{"condition": ..., "actual": ...}], "triggering_event_ids": [...], ...}

A receiver checks it with ``verify(secret, body, headers, now)``: the signature over the
exact body bytes, then the timestamp within ``tolerance_s`` of its own clock, which
stops a captured request from being replayed later. Any 2xx is success. Timeouts,
connection errors, 429 and 5xx are retried (exponential backoff, "equal jitter");
other 4xx are final. What still fails goes to the dead-letter topic (stage
``delivery``), never silently dropped.

Delivery is at least once: a retry after a lost answer, a replay after a crash (the alerts
topic's offset is committed after the delivery), a redelivered dead letter all POST the same
alert again. Every copy carries the same ``Idempotency-Key``, the alert id, which is
deterministic (a hash of the rule and the triggering event ids: ``triggers.alerts``), so a
receiver that keeps the keys it has handled acts once per alert.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from pipeline.errors import SignatureError
from pipeline.immutable import immutable
from pipeline.settings import TriggerSettings
from triggers.alerts import Alert

SIGNATURE_HEADER = "X-Webhouse-Signature"
TIMESTAMP_HEADER = "X-Webhouse-Timestamp"
ALERT_ID_HEADER = "X-Webhouse-Alert-Id"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
SCHEME = "v1"


def body_of(alert: Alert) -> bytes:
    """The exact bytes that are signed and sent (stable: sorted keys, no whitespace)."""
    return json.dumps(alert.to_json(), sort_keys=True, separators=(",", ":"), default=str).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: str, body: bytes, headers: Mapping[str, str], now: float, tolerance_s: int = 300) -> None:
    """For receivers: raise SignatureError unless the request is ours and fresh.

    ``headers`` is any case-insensitive mapping (aiohttp's ``request.headers``) or a
    dict with the header names above; ``now`` is the receiver's clock in unix seconds.
    """
    signature = headers.get(SIGNATURE_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds: {stamp!r}") from None
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise SignatureError("signature does not match the body")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is more than {tolerance_s}s from now ({int(now)})")


@immutable
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: TriggerSettings) -> RetryPolicy:
        return cls(
            settings.webhook_max_attempts,
            settings.webhook_backoff_base_s,
            settings.webhook_backoff_max_s,
            settings.webhook_timeout_s,
        )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Wait before attempt ``attempt + 1``: half of the capped exponential, plus jitter up to it."""
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@immutable
class Delivery:
    url: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None  # last failure reason: timeout, connect, http_503...


class WebhookSender:
    """Delivers alerts to every configured URL; clock, sleep and randomness are injectable."""

    def __init__(
        self,
        urls: list[str],
        secret: str,
        policy: RetryPolicy,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_attempt: Callable[[float, str | None], None] | None = None,
    ) -> None:
        self.urls = urls
        self.secret = secret
        self.policy = policy
        self.session = session
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.on_attempt = on_attempt  # (seconds, failure reason or None): metrics

    async def deliver(self, alert: Alert) -> list[Delivery]:
        body = body_of(alert)
        return list(await asyncio.gather(*(self._post(url, alert.alert_id, body) for url in self.urls)))

    async def _post(self, url: str, alert_id: str, body: bytes) -> Delivery:
        retrying = AsyncRetrying(
            retry=retry_if_result(lambda answer: answer.reason is not None and answer.retryable),
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=lambda state: self.policy.delay(state.attempt_number, self.rng),
            sleep=self.sleep,
            retry_error_callback=_last_answer,  # out of attempts: report the last failure
        )
        answer: _Answer = await retrying(self._attempt, url, alert_id, body)
        attempts = retrying.statistics["attempt_number"]
        return Delivery(url, answer.reason is None, attempts, answer.status, answer.reason)

    async def _attempt(self, url: str, alert_id: str, body: bytes) -> _Answer:
        """One signed POST (signed anew, so the timestamp is this attempt's)."""
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_KEY_HEADER: alert_id,
            ALERT_ID_HEADER: alert_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        started = time.perf_counter()
        try:
            timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
            async with self.session.post(url, data=body, headers=headers, timeout=timeout) as response:
                await response.read()
            status = response.status
            if 200 <= status < 300:
                answer = _Answer(status)
            else:
                answer = _Answer(status, f"http_{status}", retryable=status == 429 or status >= 500)
        except TimeoutError:
            answer = _Answer(reason="timeout")
        except aiohttp.ClientError as exc:
            answer = _Answer(reason="connect" if isinstance(exc, aiohttp.ClientConnectionError) else "client")
        if self.on_attempt:
            self.on_attempt(time.perf_counter() - started, answer.reason)
        return answer


@immutable
class _Answer:
    """What one attempt got: the HTTP status if any, the failure reason (None: delivered)."""

    status: int | None = None
    reason: str | None = None
    retryable: bool = True  # timeouts, connection errors, 429 and 5xx; other 4xx are final


def _last_answer(state: RetryCallState) -> _Answer:
    assert state.outcome is not None
    answer: _Answer = state.outcome.result()
    return answer
