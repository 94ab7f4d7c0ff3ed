"""The aiohttp application: Segment's HTTP tracking API plus health and metrics.

``POST /v1/import`` takes a batch body of history: events keep their own timestamps (no
clock-skew correction) and are marked ``$imported`` (``webhouse import FILE.jsonl`` posts there).

Routes are registered in ``add_routes`` only, and everything a handler needs hangs off the
app as one ``CollectorContext``: extending the collector (CORS, beacons...) means adding
routes or middlewares there, with the same ingest path.

Answers (Segment's libraries read only the status; ``code``/``message`` is what
analytics-python shows on an error):
    200 {"success": true, "accepted": n, "rejected": m, "errors": [...]}   some or all valid
    400 the same, ``code`` = the event's reason (single) or "invalid_events": none valid
    4xx {"success": false, "code": reason, "message": detail}             request refused
    400 {"code": "unparseable_request"} anything else that broke while reading the request:
        logged, counted (webhouse_collector_unexpected_errors), body dead-lettered
    503 + Retry-After: the broker did not acknowledge within produce_timeout_s
A 2xx is sent only after the broker acknowledged every event and dead letter of the request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.collector import touchpoints
from pipeline.collector.ingest import Ingestor, Outcome
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.producer import AsyncProducer
from pipeline.collector.request import ParsedRequest, header_source, parse_request, readable_body
from pipeline.collector.segment import BatchDefaults
from pipeline.errors import ProduceError, RequestError
from pipeline.immutable import immutable
from pipeline.settings import CollectorSettings, Settings
from pipeline.topics import Topics

log = logging.getLogger(__name__)
SEGMENT_ENDPOINTS = ("batch", "track", "identify", "page", "screen", "alias", "group")
IMPORT_ENDPOINT = "import"  # a batch of history: events keep their own timestamps (segment.as_imported)


def utc_now() -> datetime:
    return datetime.now(UTC)


@immutable
class CollectorContext:
    settings: Settings
    topics: Topics
    producer: AsyncProducer
    ingestor: Ingestor
    metrics: CollectorMetrics
    clock: Callable[[], datetime] = utc_now


CONTEXT = web.AppKey("collector", CollectorContext)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"success": False, "code": code, "message": message}, status=status, headers=headers
    )


def outcome_response(outcome: Outcome, single: bool) -> web.Response:
    body: dict[str, Any] = {
        "success": outcome.accepted > 0 or not outcome.errors,
        "accepted": outcome.accepted,
        "rejected": len(outcome.errors),
        "errors": [e.to_json() for e in outcome.errors],
    }
    if body["success"]:
        return web.json_response(body)
    body["code"] = outcome.errors[0].reason if single else "invalid_events"
    body["message"] = outcome.errors[0].detail if single else "no event of the batch is valid"
    return web.json_response(body, status=400)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The body, refusing to read past ``max_bytes`` (declared or actual)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestError(413, "body_too_large", f"the body is over {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, "body_too_large", f"the body is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def segment_handler(endpoint: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        ctx.metrics.in_flight.inc()
        try:
            return await _ingest(ctx, request, endpoint)
        finally:
            ctx.metrics.in_flight.dec()

    return handle


def client_ip(request: web.Request, trust_forwarded_for: bool) -> str | None:
    """The caller's address, as Segment stamps it when an event brings no context.ip."""
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.remote


def with_client_ip(parsed: ParsedRequest, request: web.Request, settings: CollectorSettings) -> ParsedRequest:
    """Events without their own context.ip get the caller's (an event's own value wins)."""
    ip = client_ip(request, settings.trust_forwarded_for)
    if not ip:
        return parsed
    context = {"ip": ip, **parsed.defaults.context}
    return replace(parsed, defaults=BatchDefaults(parsed.defaults.sent_at, context))


def unexpected(ctx: CollectorContext, bug: Exception) -> RequestError:
    """An exception no check meant to raise while reading a request: logged, counted, a 400."""
    log.error("a request could not be parsed", exc_info=bug)
    ctx.metrics.unexpected_errors.labels(stage="request").inc()
    return RequestError(400, "unparseable_request", f"{type(bug).__name__}: {bug}"[:300])


async def _ingest(ctx: CollectorContext, request: web.Request, endpoint: str) -> web.StreamResponse:
    settings = ctx.settings.collector
    received_at = ctx.clock()
    meta = {
        "endpoint": request.path,
        "content_type": request.headers.get("Content-Type", ""),
        "content_encoding": request.headers.get("Content-Encoding", ""),
        "user_agent": request.headers.get("User-Agent", "")[:200],
    }
    source: str | None = None
    body = b""
    try:
        try:
            source = header_source(request.headers.get("Authorization"), settings.write_keys)
            body = await read_body(request, settings.max_body_bytes)
            try:
                parsed = parse_request(
                    endpoint,
                    body,
                    request.headers,
                    settings.write_keys,
                    settings.max_body_bytes,
                    accepted_content_types=touchpoints.BROWSER_CONTENT_TYPES,
                    header_source_name=source,
                    max_event_depth=settings.max_event_depth,
                )
                parsed = with_client_ip(parsed, request, settings)
                prepared = ctx.ingestor.prepare(parsed, received_at, meta)
            except RequestError:
                raise
            except Exception as bug:  # bad input is a 4xx, whatever broke
                raise unexpected(ctx, bug) from bug
        except RequestError as exc:
            # Dead-letter only a fully read body of a client the header authenticated.
            if exc.status not in (401, 413) and source is not None:
                payload, inflated = readable_body(body, meta["content_encoding"], settings.max_body_bytes)
                letter_meta = {**meta, "source": source, **({"payload_inflated": "gzip"} if inflated else {})}
                await ctx.ingestor.dead_letter_request(exc, payload, received_at, letter_meta)
            raise
        outcome = await ctx.ingestor.send(prepared)
    except RequestError as exc:
        ctx.metrics.requests_rejected.labels(reason=exc.reason).inc()
        return error_response(exc.status, exc.reason, exc.detail)
    except ProduceError as exc:
        ctx.metrics.requests_rejected.labels(reason="kafka_unavailable").inc()
        return error_response(
            503, "kafka_unavailable", str(exc), headers={"Retry-After": str(settings.retry_after_s)}
        )
    return outcome_response(outcome, single=endpoint not in ("batch", IMPORT_ENDPOINT))


async def health(request: web.Request) -> web.StreamResponse:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    """Readiness: the broker answers and the topics the collector writes exist."""
    ctx = request.app[CONTEXT]
    for topic in (ctx.topics.raw_events, ctx.topics.dead_letters):
        problem = await ctx.producer.ready(topic, ctx.settings.collector.health_timeout_s)
        if problem is not None:
            return web.json_response({"status": "unavailable", "detail": problem}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[CONTEXT].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    for endpoint in (*SEGMENT_ENDPOINTS, IMPORT_ENDPOINT):
        app.router.add_post(f"/v1/{endpoint}", segment_handler(endpoint))
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    touchpoints.add_routes(
        app, app[CONTEXT].settings.collector, segment_handler, lambda r: r.app[CONTEXT].ingestor
    )


def build_app(ctx: CollectorContext) -> web.Application:
    """Serve it with ``auto_decompress=False`` on the runner (``CollectorServer`` does): the
    collector inflates gzip bodies itself, bounded by max_body_bytes; a refused body's dead
    letter keeps it inflated when it was whole gzip (header ``payload_inflated``), so that it
    can be read and scrubbed of personal data, else as received."""
    app = web.Application(middlewares=touchpoints.middlewares(ctx.settings.collector))
    app[CONTEXT] = ctx
    add_routes(app)
    return app
