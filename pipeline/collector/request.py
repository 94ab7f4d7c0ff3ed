"""One HTTP request body -> the write key's source and the raw events in it (pure).

Checks, in this order, each a ``RequestError(status, reason, detail)``:

    401 invalid_authorization / unknown_write_key   Basic auth header, checked first
    413 body_too_large      more than collector.max_body_bytes, compressed or not
    415 unsupported_media_type / unsupported_encoding
    400 invalid_gzip, invalid_json, invalid_batch
    400 too_deep            still too deep to parse once nesting past the event limit is cut
                            (events past collector.max_event_depth are refused one by one)
    401 missing_write_key / unknown_write_key       no header: ``writeKey`` in the body

Dead-lettering a refused request is the caller's decision (``dead_letter_worthy``): only
bodies read in full from a client whose write key came in the header. An unauthenticated
body is anyone's bytes and would let anyone fill the dead-letter topic; an oversized body
was not read to the end.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from pipeline.collector.limits import cut_deep
from pipeline.collector.segment import BatchDefaults
from pipeline.errors import RequestError
from pipeline.immutable import immutable

JSON_CONTENT_TYPES = frozenset({"application/json"})


@immutable
class ParsedRequest:
    source: str
    events: list[Any]
    implied_type: str | None  # the call type a single-event endpoint stands for
    body: bytes  # decompressed
    defaults: BatchDefaults = field(default_factory=BatchDefaults)
    cuts: tuple[bytes, ...] = ()  # parts too deep to parse (limits.cut_deep)
    imported: bool = False  # /v1/import: history with its own times (see segment.as_imported)


def header_source(authorization: str | None, write_keys: Mapping[str, str]) -> str | None:
    """The source named by a Basic auth header; None without a header."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise RequestError(401, "invalid_authorization", "expected Basic auth with the write key as user")
    try:
        user = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise RequestError(401, "invalid_authorization", "the Basic auth header is not base64") from None
    return source_for(user, write_keys)


def source_for(write_key: Any, write_keys: Mapping[str, str]) -> str:
    if not write_key:
        raise RequestError(401, "missing_write_key", "send the write key as the Basic auth user")
    if not isinstance(write_key, str) or write_key not in write_keys:
        raise RequestError(401, "unknown_write_key", "this write key is not accepted")
    return write_keys[write_key]


def check_content_type(content_type: str | None, accepted: frozenset[str] = JSON_CONTENT_TYPES) -> None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in accepted:
        raise RequestError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or 'missing'!r}; send {', '.join(sorted(accepted))}",
        )


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo gzip (Segment libraries' option), never inflating past ``max_bytes``."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise RequestError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}; send gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise RequestError(400, "invalid_gzip", f"the body is not valid gzip: {exc}") from None
    if len(data) > max_bytes:
        raise RequestError(413, "body_too_large", f"the body inflates past {max_bytes} bytes")
    if not inflater.eof:
        raise RequestError(400, "invalid_gzip", "the gzip stream is truncated")
    return data


def readable_body(body: bytes, content_encoding: str | None, max_bytes: int) -> tuple[bytes, bool]:
    """A refused body as its dead letter keeps it: inflated when it is whole gzip (so the
    dead letter can be read and scrubbed of personal data), else as received. Second: inflated?"""
    try:
        data = decode_body(body, content_encoding, max_bytes)
    except RequestError:
        return body, False
    return data, data is not body


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes, cut_depth: int = 34) -> tuple[Any, tuple[bytes, ...]]:
    """The document, and what ``cut_deep`` took out of it when it was too deep to parse."""
    cuts: tuple[bytes, ...] = ()
    try:
        try:
            return json.loads(data, parse_constant=_no_constants), cuts
        except RecursionError:  # past the parser's stack: parse it without its deepest parts
            data, cuts = cut_deep(data, cut_depth)
            return json.loads(data, parse_constant=_no_constants), cuts
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(400, "invalid_json", f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "too_deep", "the body nests too deep to parse") from None


def parse_request(
    endpoint: str,
    body: bytes,
    headers: Mapping[str, str],
    write_keys: Mapping[str, str],
    max_body_bytes: int,
    accepted_content_types: frozenset[str] = JSON_CONTENT_TYPES,
    header_source_name: str | None = None,
    max_event_depth: int = 32,
) -> ParsedRequest:
    """``endpoint`` is "batch" or a call type; ``header_source_name`` what ``header_source``
    found (the caller checks the header before reading the body)."""
    if len(body) > max_body_bytes:
        raise RequestError(413, "body_too_large", f"the body is over {max_body_bytes} bytes")
    check_content_type(headers.get("Content-Type"), accepted_content_types)
    data = decode_body(body, headers.get("Content-Encoding"), max_body_bytes)
    document, cuts = parse_json(data, max_event_depth + 2)  # + the batch object and array
    if not isinstance(document, dict):
        raise RequestError(400, "invalid_json", "the body must be a JSON object")
    source = header_source_name or source_for(document.get("writeKey"), write_keys)
    if endpoint not in ("batch", "import"):
        return ParsedRequest(source, [document], endpoint, data, cuts=cuts)
    batch = document.get("batch")
    if not isinstance(batch, list):
        raise RequestError(400, "invalid_batch", 'a batch body is {"batch": [events...]}')
    context = document.get("context")
    defaults = BatchDefaults(document.get("sentAt"), context if isinstance(context, dict) else {})
    return ParsedRequest(source, batch, None, data, defaults, cuts, imported=endpoint == "import")
