"""HTTP body -> source and raw events: auth, size, content type, gzip, JSON, batch shape."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable

import pytest

from pipeline.collector.request import decode_body, header_source, parse_request
from pipeline.errors import RequestError

KEYS = {"k1": "shop-web"}
JSON = {"Content-Type": "application/json; charset=utf-8"}


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def refused(call: Callable[..., object], *args: object, **kwargs: object) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_header_write_key() -> None:
    assert header_source(basic("k1"), KEYS) == "shop-web"
    assert header_source(None, KEYS) is None
    assert refused(header_source, basic("k2"), KEYS).reason == "unknown_write_key"
    assert refused(header_source, basic(""), KEYS).reason == "missing_write_key"
    error = refused(header_source, "Basic !!!", KEYS)
    assert (error.status, error.reason) == (401, "invalid_authorization")
    assert refused(header_source, "Bearer abc", KEYS).reason == "invalid_authorization"


def test_batch_body_with_defaults_and_body_write_key() -> None:
    body = {
        "writeKey": "k1",
        "sentAt": "2026-11-23T09:00:00Z",
        "context": {"ip": "1.2.3.4"},
        "batch": [{"a": 1}],
    }
    parsed = parse_request("batch", json.dumps(body).encode(), JSON, KEYS, 10_000)
    assert (parsed.source, parsed.events, parsed.implied_type) == ("shop-web", [{"a": 1}], None)
    assert parsed.defaults.sent_at == "2026-11-23T09:00:00Z" and parsed.defaults.context == {"ip": "1.2.3.4"}


def test_single_event_endpoint_is_the_event() -> None:
    body = json.dumps({"event": "X"}).encode()
    parsed = parse_request("track", body, JSON, KEYS, 10_000, header_source_name="shop-web")
    assert (parsed.events, parsed.implied_type) == ([{"event": "X"}], "track")


@pytest.mark.parametrize(
    ("endpoint", "body", "headers", "status", "reason"),
    [
        ("batch", b"{", JSON, 400, "invalid_json"),
        ("batch", b'{"batch": [NaN]}', JSON, 400, "invalid_json"),
        ("batch", b"[]", JSON, 400, "invalid_json"),
        ("batch", b"\xff\xfe", JSON, 400, "invalid_json"),
        ("batch", b'{"batch": {}}', JSON, 400, "invalid_batch"),
        ("batch", b'{"batch": []}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("batch", b'{"batch": []}', {}, 415, "unsupported_media_type"),
        ("batch", b'{"batch": []}', {**JSON, "Content-Encoding": "br"}, 415, "unsupported_encoding"),
        ("batch", b'{"batch": []}', {**JSON, "Content-Encoding": "gzip"}, 400, "invalid_gzip"),
        ("batch", b"x" * 101, JSON, 413, "body_too_large"),
    ],
)
def test_refused_requests(
    endpoint: str, body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    error = refused(parse_request, endpoint, body, headers, KEYS, 100, header_source_name="shop-web")
    assert (error.status, error.reason) == (status, reason)


def test_body_write_key_is_needed_without_a_header() -> None:
    error = refused(parse_request, "batch", b'{"batch": []}', JSON, KEYS, 100)
    assert (error.status, error.reason) == (401, "missing_write_key")
    error = refused(parse_request, "batch", b'{"batch": [], "writeKey": "nope"}', JSON, KEYS, 100)
    assert (error.status, error.reason) == (401, "unknown_write_key")


def test_gzip_is_inflated_within_the_limit() -> None:
    data = json.dumps({"batch": [{"p": "x" * 50}]}).encode()
    assert decode_body(gzip.compress(data), "gzip", 1000) == data
    assert decode_body(data, None, 1000) == data
    error = refused(decode_body, gzip.compress(b" " * 5000), "gzip", 1000)
    assert (error.status, error.reason) == (413, "body_too_large")
    assert refused(decode_body, gzip.compress(data)[:-12], "gzip", 1000).reason == "invalid_gzip"
