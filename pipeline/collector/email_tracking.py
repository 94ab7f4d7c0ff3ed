"""E-mail touchpoints on the collector: open pixel, click redirect, Mailgun webhook.

    GET  /e/o/<token>.gif      Email Opened, answers a 1x1 transparent GIF
    GET  /e/c/<token>          Email Link Clicked, answers 302 to the signed target
    POST /e/webhooks/mailgun   Mailgun's event webhook -> the matching e-mail event

Each builds a Segment-shaped track message and hands it to the collector's normal
path (``Ingestor.ingest``: mapping, Avro, raw-events topic, dead letters), so e-mail
events look exactly like any other touchpoint's. A token that does not verify is
refused with 403 and produces nothing (no forged opens, no open redirect).

A reader must never be let down by tracking: when Kafka is unavailable the pixel and
the redirect still answer (the loss is logged and counted as ``kafka_unavailable``
in ``webhouse_collector_requests_rejected``). The webhook instead answers 503, so
Mailgun retries later.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pipeline.collector import email_links, mailgun
from pipeline.collector.ingest import Ingestor, Outcome
from pipeline.collector.request import ParsedRequest
from pipeline.errors import ProduceError, RequestError, ValidationError
from pipeline.settings import CollectorEmailSettings

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}
TRACKING_SOURCE = "email-tracking"
MAILGUN_PATH = "/e/webhooks/mailgun"

IngestorOf = Callable[[web.Request], Ingestor]
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tracking_message(
    event: str, link: email_links.EmailLink, at: datetime, request: web.Request
) -> dict[str, Any]:
    """The track message of an open or a click, as a Segment library would send it."""
    properties = {"campaign_id": link.campaign_id, "send_id": link.send_id}
    if link.url is not None:
        properties["link_url"] = link.url
    context: dict[str, Any] = {
        "channel": "email",
        "library": {"name": "webhouse-email-tracking", "version": "1"},
    }
    if request.headers.get("User-Agent"):
        context["userAgent"] = request.headers["User-Agent"]
    if request.remote:
        context["ip"] = request.remote
    return {
        "type": "track",
        "event": event,
        "userId": link.customer_id,
        "timestamp": _iso(at),
        "properties": properties,
        "context": context,
    }


class EmailTracking:
    """The three handlers, bound to the settings and to the app's ingestor."""

    def __init__(self, settings: CollectorEmailSettings, ingestor_of: IngestorOf, clock: Clock = _utc_now):
        self.settings = settings
        self.ingestor_of = ingestor_of
        self.clock = clock
        self.replays = mailgun.ReplayGuard()

    def _refuse(self, request: web.Request, status: int, error: ValidationError) -> web.Response:
        self.ingestor_of(request).metrics.requests_rejected.labels(reason=error.reason).inc()
        return web.json_response(
            {"error": error.reason, "message": error.detail}, status=status, headers=NO_STORE
        )

    async def _ingest(self, request: web.Request, source: str, message: dict[str, Any]) -> Outcome:
        parsed = ParsedRequest(source, [message], None, json.dumps(message).encode())
        meta = {"path": request.path, "remote": request.remote or ""}
        return await self.ingestor_of(request).ingest(parsed, self.clock(), meta)

    async def _record_for_reader(self, request: web.Request, message: dict[str, Any]) -> None:
        """Opens and clicks: the reader gets their answer whatever happens to the event."""
        try:
            outcome = await self._ingest(request, TRACKING_SOURCE, message)
        except ProduceError as exc:
            self.ingestor_of(request).metrics.requests_rejected.labels(reason="kafka_unavailable").inc()
            log.error("e-mail %s lost, Kafka unavailable: %s", message["event"], exc)
            return
        for error in outcome.errors:  # dead-lettered and counted by the ingestor
            log.error("e-mail %s refused by the event model: %s", message["event"], error.detail)

    async def open_pixel(self, request: web.Request) -> web.StreamResponse:
        try:
            link = email_links.verify(request.match_info["token"], "o", self.settings.link_secrets)
        except ValidationError as exc:
            return self._refuse(request, 403, exc)
        await self._record_for_reader(request, tracking_message("Email Opened", link, self.clock(), request))
        return web.Response(body=PIXEL, content_type="image/gif", headers=NO_STORE)

    async def click(self, request: web.Request) -> web.StreamResponse:
        try:
            link = email_links.verify(request.match_info["token"], "c", self.settings.link_secrets)
        except ValidationError as exc:
            return self._refuse(request, 403, exc)
        assert link.url is not None  # verify() checks a click token carries an http(s) target
        await self._record_for_reader(
            request, tracking_message("Email Link Clicked", link, self.clock(), request)
        )
        return web.Response(status=302, headers={"Location": link.url, **NO_STORE})

    async def mailgun_webhook(self, request: web.Request) -> web.StreamResponse:
        if not self.settings.mailgun_signing_key:
            error = ValidationError("not_configured", "set collector.email.mailgun_signing_key")
            return self._refuse(request, 503, error)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._refuse(request, 400, ValidationError("invalid_json", "the body is not JSON"))
        try:
            token = mailgun.verify(
                body, self.settings.mailgun_signing_key, self.clock(), self.settings.mailgun_max_age_s
            )
            event_data = body.get("event-data")
            digest = mailgun.body_digest(event_data)
            if not self.replays.check(token, digest):
                return web.json_response({"status": "duplicate"})
        except ValidationError as exc:
            return self._refuse(request, 401, exc)
        received_at = self.clock()
        try:
            if not isinstance(event_data, dict):
                raise ValidationError("bad_event", "event-data is not an object")
            message = mailgun.to_message(event_data)
        except ValidationError as exc:
            # Signed by Mailgun but not an event we can read: keep it, tell Mailgun not to retry.
            error = RequestError(406, exc.reason, exc.detail)
            meta = {"path": request.path, "provider": mailgun.PROVIDER}
            payload = json.dumps(event_data).encode()
            try:
                await self.ingestor_of(request).dead_letter_request(error, payload, received_at, meta)
            except ProduceError:
                return web.json_response(
                    {"error": "kafka_unavailable"}, status=503, headers={"Retry-After": "60"}
                )
            return self._refuse(request, 406, error)
        if message is None:
            self.replays.remember(token, digest)
            return web.json_response({"status": "ignored", "event": event_data.get("event")})
        try:
            outcome = await self._ingest(request, mailgun.PROVIDER, message)
        except ProduceError:
            self.ingestor_of(request).metrics.requests_rejected.labels(reason="kafka_unavailable").inc()
            return web.json_response(
                {"error": "kafka_unavailable"}, status=503, headers={"Retry-After": "60"}
            )
        self.replays.remember(token, digest)
        if outcome.errors:  # dead-lettered by the ingestor; a retry would fail the same way
            return web.json_response({"errors": [e.to_json() for e in outcome.errors]}, status=406)
        return web.json_response({"status": "ok", "event": message["event"]})


def add_email_routes(
    app: web.Application, settings: CollectorEmailSettings, ingestor_of: IngestorOf, clock: Clock = _utc_now
) -> EmailTracking:
    tracking = EmailTracking(settings, ingestor_of, clock)
    app.router.add_get(email_links.OPEN_PATH + "{token}" + email_links.PIXEL_SUFFIX, tracking.open_pixel)
    app.router.add_get(email_links.CLICK_PATH + "{token}", tracking.click)
    app.router.add_post(MAILGUN_PATH, tracking.mailgun_webhook)
    return tracking
