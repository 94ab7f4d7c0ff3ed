"""One Segment HTTP API event (JSON) -> one ``customer_event`` record (dict for the Avro serde).

Pure: the server clock (``received_at``) and the source are arguments. Every problem is a
``ValidationError(reason, detail)`` with a short reason code:

    invalid_event       not a JSON object
    invalid_type        ``type`` missing, unknown, or not the endpoint's type
    missing_id          neither userId nor anonymousId (alias: userId and previousId)
    missing_event_name  a track call without ``event``
    missing_field       a field the call type or semantic event needs (groupId, purposes)
    invalid_timestamp   timestamp / sentAt / originalTimestamp not ISO-8601
    invalid_field       a value of the wrong type; the detail names the JSON path
    event_too_large     checked by ``check_size``

Nothing the client sent is dropped (except ``writeKey``, a credential): properties the
typed records do not take stay in ``properties`` under their own key; anything else
(unknown top-level or context keys, unknown product keys) under ``$`` + its JSON path,
e.g. ``$context.network`` or ``$properties.products.0.colour``; values JSON-encoded.

Times: ``timestamp`` is the client-clock event time. When a client forwards an event that
already went through Segment it carries ``originalTimestamp`` (client clock) next to a
corrected ``timestamp``; the client-clock one is kept, so that ``timestamp`` and
``sent_at`` share a clock and the processors can correct the skew as
``received_at - (sent_at - timestamp)``. The other value is kept as ``$timestamp``.

Message id: the client's ``messageId``, else a uuid5 over the canonical JSON of the event,
so a retried body gets the same id and downstream de-duplication works. An event that
also lacks a timestamp has nothing that tells two sends apart, so the server time joins
the hash: a retry of such an event is a new event.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import field
from datetime import datetime
from typing import Any

import orjson

from pipeline.collector import coerce, semantic
from pipeline.collector.fields import Source, fill, fill_from
from pipeline.errors import ValidationError
from pipeline.immutable import immutable

CALL_TYPES = ("track", "identify", "page", "screen", "alias", "group")
CHANNELS = {
    "web": "web",
    "browser": "web",
    "app": "app",
    "mobile": "app",
    "email": "email",
    "server": "server",
}
MOBILE_LIBRARY_HINTS = ("ios", "android", "react-native", "flutter", "swift", "kotlin", "xamarin", "unity")
WEB_LIBRARY_HINTS = ("analytics.js", "analytics-next", "analytics-js")
MESSAGE_ID_NAMESPACE = uuid.UUID("5b0e5a53-1b7e-4c51-9a57-3f0c3c1d7e10")

# Top-level keys the mapping reads itself; everything else is kept as `$<key>`.
_KNOWN = frozenset(
    {
        "type",
        "event",
        "name",
        "messageId",
        "anonymousId",
        "userId",
        "previousId",
        "groupId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "context",
        "properties",
        "traits",
        "channel",
        "writeKey",
    }
)
_CONTEXT_RECORDS = {
    "page": "Page",
    "campaign": "Campaign",
    "device": "Device",
    "os": "Os",
    "app": "App",
    "library": "Library",
    "screen": "Screen",
}
_PAGE_FIELDS = ("url", "path", "referrer", "title", "search")
_IDS = {
    "message_id": "messageId",
    "anonymous_id": "anonymousId",
    "user_id": "userId",
    "previous_id": "previousId",
    "group_id": "groupId",
}
_TRAIT_CALLS = ("identify", "group")


@immutable
class BatchDefaults:
    """What a /v1/batch body says for all its events: its own ``sentAt`` and ``context``."""

    sent_at: Any = None
    context: dict[str, Any] = field(default_factory=dict)


def canonical_json(raw: Any) -> bytes:
    return json.dumps(raw, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def check_size(raw: Any, max_event_bytes: int) -> None:
    """An event's size is its canonical JSON's; one surely within the limit by orjson's measure
    (``_surely_within``) is not measured again."""
    if _surely_within(raw, max_event_bytes):
        return
    try:
        size = len(canonical_json(raw))
    except UnicodeEncodeError as exc:  # "\ud800" is valid JSON but no text: Avro could not store it
        raise ValidationError("invalid_unicode", f"a string is not valid Unicode: {exc.reason}") from None
    if size > max_event_bytes:
        raise ValidationError("event_too_large", f"event is {size} bytes, the limit is {max_event_bytes}")


def _surely_within(raw: Any, max_event_bytes: int) -> bool:
    """Whether orjson's compact text, about ten times faster to make, shows the event within the
    limit: the canonical text is the same but for the key order and a float's exponent (``1e-07``
    against ``1e-7``), so never twice as long. False for what orjson refuses (a lone surrogate, an
    integer past 64 bits): ``canonical_json`` measures those, and names the surrogate."""
    try:
        return 2 * len(orjson.dumps(raw)) <= max_event_bytes
    except orjson.JSONEncodeError:
        return False


def derive_message_id(raw: dict[str, Any], received_at: datetime) -> str:
    content = {k: v for k, v in raw.items() if k != "writeKey"}
    seed = canonical_json(content)
    if content.get("timestamp") is None and content.get("originalTimestamp") is None:
        seed += b"\x00" + received_at.isoformat().encode()
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, seed.decode()))


def _id(raw: dict[str, Any], key: str) -> str | None:
    value = coerce.as_str(raw.get(key), key)
    return value if value else None


def _call_type(raw: dict[str, Any], implied: str | None) -> str:
    given = raw.get("type")
    if given is None:
        if implied is None:
            raise ValidationError("invalid_type", "type is missing")
        return implied
    if given not in CALL_TYPES:
        raise ValidationError(
            "invalid_type", f"type {str(given)[:40]!r} is not one of {', '.join(CALL_TYPES)}"
        )
    if implied is not None and given != implied:
        raise ValidationError("invalid_type", f"a {given} event sent to the {implied} endpoint")
    return str(given)


def _context(raw_context: dict[str, Any], leftovers: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    source = Source(raw_context, "context")
    record: dict[str, Any] = {}
    for key, record_name in _CONTEXT_RECORDS.items():
        found = source.take_raw(key)
        record[key] = fill_from(record_name, found[1] if found else None, f"context.{key}", leftovers)
    for name in ("locale", "timezone", "ip", "user_agent"):
        record[name] = source.take(name, "string")
    channel = source.take("channel", "string")
    for key, value in source.rest().items():
        leftovers[f"$context.{key}"] = value
    return record, channel


def _traits(raw_traits: dict[str, Any]) -> dict[str, Any]:
    """identify traits -> Traits; Segment's nested ``address`` and ``company`` are flattened."""
    source = Source(dict(raw_traits), "traits")
    record = fill("Traits", source, skip=("company",))
    extra: dict[str, Any] = {}
    found = source.take_raw("company")
    if found is not None:
        company = found[1]
        if isinstance(company, dict):
            rest = dict(company)
            record["company"] = coerce.as_str(rest.pop("name", None), "traits.company.name")
            if rest:
                extra["company"] = rest
        else:
            record["company"] = coerce.as_str(company, "traits.company")
    found = source.take_raw("address")
    if found is not None and found[1] is not None:
        address = Source(coerce.as_dict(found[1], "traits.address"), "traits.address")
        for name, field_name in (
            ("city", "city"),
            ("state", "region"),
            ("region", "region"),
            ("country", "country"),
            ("postal_code", "postal_code"),
        ):
            value = address.take(name, "string")
            if record[field_name] is None and value is not None:
                record[field_name] = value
            elif value is not None:
                extra[f"address.{name}"] = value
        if address.rest():
            extra["address"] = address.rest()
    extra.update(source.rest())
    record["extra"] = {k: coerce.to_json(v) for k, v in extra.items()}
    return record


def _channel(explicit: str | None, record: dict[str, Any], raw_channel: Any) -> str:
    """context.channel (ours, strict); else what the event shows (an e-mail event, an app or
    mobile library, a page); else the client's top-level ``channel``; else "server".

    The top-level ``channel`` is a library's constant (rudder-sdk-python says "server" for a
    page view it forwards), so the event's own evidence comes first; a top-level value that
    is not the result is kept as ``$channel``.
    """
    if explicit is not None:
        if explicit.lower() not in CHANNELS:
            raise coerce.invalid("context.channel", "one of " + ", ".join(sorted(CHANNELS)), explicit)
        return CHANNELS[explicit.lower()]
    claimed = CHANNELS.get(raw_channel.lower()) if isinstance(raw_channel, str) else None
    channel = _evidence_channel(record) or claimed or "server"
    if raw_channel is not None and claimed != channel:
        record["properties"]["$channel"] = coerce.to_json(raw_channel)
    return channel


def _evidence_channel(record: dict[str, Any]) -> str | None:
    context = record["context"]
    library = ((context["library"] or {}).get("name") or "").lower()
    if record["email"] is not None:
        return "email"
    if (
        record["type"] == "screen"
        or record["application"] is not None
        or context["app"] is not None
        or any(hint in library for hint in MOBILE_LIBRARY_HINTS)
    ):
        return "app"
    if (
        record["type"] == "page"
        or context["page"] is not None
        or any(h in library for h in WEB_LIBRARY_HINTS)
    ):
        return "web"
    return None


def _check_ids(call: str, ids: dict[str, str | None]) -> None:
    if call == "alias":
        if ids["user_id"] is None or ids["previous_id"] is None:
            raise ValidationError("missing_id", "alias needs both userId and previousId")
    elif ids["user_id"] is None and ids["anonymous_id"] is None:
        raise ValidationError("missing_id", "neither userId nor anonymousId is set")
    if call == "group" and ids["group_id"] is None:
        raise ValidationError("missing_field", "groupId: a group call names its group")


def _names(raw: dict[str, Any], call: str, leftovers: dict[str, Any]) -> tuple[str | None, str | None]:
    """(event, name): a track call's event name, a page or screen call's name."""
    event = None
    if call == "track":
        event = coerce.as_str(raw.get("event"), "event")
        if not event or not event.strip():
            raise ValidationError("missing_event_name", "a track call needs a non-empty event name")
    elif raw.get("event") is not None:
        leftovers["$event"] = raw["event"]
    name = None
    if call in ("page", "screen"):
        name = coerce.as_str(raw.get("name"), "name")
    elif raw.get("name") is not None:
        leftovers["$name"] = raw["name"]
    return event, name


def _times(
    raw: dict[str, Any], defaults: BatchDefaults, leftovers: dict[str, Any]
) -> tuple[datetime | None, datetime | None]:
    """(timestamp, sent_at), both on the client's clock (see the module docstring)."""
    timestamp = coerce.as_timestamp(raw.get("timestamp"), "timestamp")
    original = coerce.as_timestamp(raw.get("originalTimestamp"), "originalTimestamp")
    if original is not None:
        if raw.get("timestamp") is not None:
            leftovers["$timestamp"] = raw["timestamp"]
        timestamp = original
    if raw.get("sentAt") is not None:
        return timestamp, coerce.as_timestamp(raw["sentAt"], "sentAt")
    return timestamp, coerce.as_timestamp(defaults.sent_at, "sentAt (batch)")


def _page_from_properties(context: dict[str, Any], props: Source) -> None:
    """analytics.js repeats the page fields in page-call properties; fill context.page from them."""
    page = context["page"] or dict.fromkeys(_PAGE_FIELDS)
    for key in _PAGE_FIELDS:
        prop_key = props.key_for(key)
        if prop_key is None or props.data[prop_key] is None:
            continue
        value = coerce.as_str(props.data[prop_key], f"properties.{prop_key}")
        if page[key] is None:
            page[key] = value
        if page[key] == value:  # the same fact twice: context.page keeps it
            props.taken.add(prop_key)
    context["page"] = page if any(v is not None for v in page.values()) else None


def merged_traits(call: str, raw: dict[str, Any], context_traits: Any) -> dict[str, Any] | None:
    """The person's traits an identify or group call carries, or None for other calls.

    Segment's libraries send them in ``traits``; RudderStack's (and analytics.js with stored
    traits) in ``context.traits``. Per key, a non-null value in ``traits`` wins over
    ``context.traits``. A group call's own ``traits`` describe the group, not the person:
    only its ``context.traits`` fill the Traits record.
    """
    if call not in ("identify", "group"):
        return None
    merged = {k: v for k, v in coerce.as_dict(context_traits, "context.traits").items() if v is not None}
    if call == "identify":
        top = coerce.as_dict(raw.get("traits"), "traits")
        merged.update({k: v for k, v in top.items() if v is not None or k not in merged})
    return merged


def map_event(
    raw: Any,
    *,
    received_at: datetime,
    source: str | None,
    implied_type: str | None = None,
    defaults: BatchDefaults | None = None,
) -> dict[str, Any]:
    """Validate one Segment event and map it to a customer_event record."""
    if not isinstance(raw, dict):
        raise ValidationError("invalid_event", f"an event is a JSON object, got {type(raw).__name__}")
    defaults = defaults or BatchDefaults()
    received_at = received_at.replace(microsecond=received_at.microsecond // 1000 * 1000)
    call = _call_type(raw, implied_type)
    leftovers: dict[str, Any] = {}
    ids = {name: _id(raw, key) for name, key in _IDS.items()}
    _check_ids(call, ids)
    event, name = _names(raw, call, leftovers)
    timestamp, sent_at = _times(raw, defaults, leftovers)

    raw_context = {**defaults.context, **coerce.as_dict(raw.get("context"), "context")}
    traits = merged_traits(call, raw, raw_context.pop("traits", None) if call in _TRAIT_CALLS else None)
    context, explicit_channel = _context(raw_context, leftovers)

    props = Source(dict(coerce.as_dict(raw.get("properties"), "properties")), "properties")
    record: dict[str, Any] = {
        "message_id": ids["message_id"] or derive_message_id(raw, received_at),
        "type": call,
        "event": event,
        "name": name,
        **{k: v for k, v in ids.items() if k != "message_id"},
        "timestamp": timestamp,
        "sent_at": sent_at,
        "received_at": received_at,
        "source": source,
        "context": context,
        "traits": _traits(traits) if traits is not None and (traits or call == "identify") else None,
        "commerce": None,
        "email": None,
        "application": None,
        "consent": None,
        "enrichment": None,
    }
    if event in semantic.SEMANTIC:
        target, mapper = semantic.SEMANTIC[event]
        record[target] = mapper(event, props, leftovers)
    if call == "page":
        _page_from_properties(context, props)
    if call != "identify":
        for key, value in coerce.as_dict(raw.get("traits"), "traits").items():
            leftovers[f"$traits.{key}"] = value
    record["properties"] = _properties(raw, props, leftovers)
    record["channel"] = _channel(explicit_channel, record, raw.get("channel"))
    return record


def _properties(raw: dict[str, Any], props: Source, leftovers: dict[str, Any]) -> dict[str, str]:
    """Untyped properties under their own key, everything else unread under ``$`` + its path."""
    properties = {k: coerce.to_json(v) for k, v in props.rest().items()}
    for key, value in raw.items():
        if key not in _KNOWN and value not in (None, {}, []):
            leftovers[f"${key}"] = value
    properties.update({k: coerce.to_json(v) for k, v in leftovers.items() if v not in (None, {}, [])})
    return properties


IMPORTED_KEY = "$imported"


def as_imported(record: dict[str, Any], raw: Any, defaults: BatchDefaults) -> dict[str, Any]:
    """An event of a history import (/v1/import): it happened at its own ``timestamp``.

    ``sent_at`` is dropped so the processors take the timestamp as it is: the clock-skew
    correction (``received_at - (sent_at - timestamp)``) is for live clients whose clock may
    be off, and would move a year-old event to its arrival time. The client's ``sentAt`` is
    kept as ``$sentAt``, and the event is marked ``$imported`` so that consumers acting on
    live traffic (trigger rules) can leave history alone.
    """
    if record["timestamp"] is None:
        raise ValidationError("missing_field", "timestamp: an imported event carries its own time")
    given = raw.get("sentAt") if isinstance(raw, dict) and raw.get("sentAt") is not None else defaults.sent_at
    properties = dict(record["properties"])
    if given is not None:
        properties["$sentAt"] = coerce.to_json(given)
    properties[IMPORTED_KEY] = "true"
    return {**record, "sent_at": None, "properties": properties}
