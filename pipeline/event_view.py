"""What one enriched event says about its customer: a small, flat, JSON-friendly view.

The enriched Avro event is large; what acts on a customer's events (the triggers' rules
and profiles) needs a dozen of its fields. ``EventView`` keeps those, under the names rule
authors write in YAML (``event.product_id``, ``event.revenue``). It lives in the base
because the stage that writes an enriched event and the stages that read it both use it.

Times are integer epoch milliseconds.

The worker writes each enriched event's view with it, in Kafka headers (``view_headers``), so
that a stage that needs only the view reads those instead of decoding the 141-field event
again (issue 11: that second decode was the largest single cost of the triggers).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any, ClassVar, overload

from pipeline import fast_json
from pipeline.immutable import immutable

IMPORTED = "$imported"  # property the collector's import endpoint sets (pipeline.collector.segment)


@overload
def to_ms(value: datetime | int) -> int: ...
@overload
def to_ms(value: None) -> None: ...
@overload
def to_ms(value: datetime | int | None) -> int | None: ...
def to_ms(value: datetime | int | None) -> int | None:
    """Epoch milliseconds of a time (an int is taken as already in milliseconds); None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@immutable
class EventView:
    """The fields of one enriched event that profiles and rules use."""

    message_id: str
    name: str  # track event name, or the call type for page/screen/identify/alias/group
    call_type: str
    channel: str
    time: int  # corrected event time, epoch ms
    customer_id: str  # profile key: stitched customer id, else anonymous id
    anonymous_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    is_bot: bool = False
    product_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    revenue: float | None = None
    order_id: str | None = None
    campaign_id: str | None = None
    link_url: str | None = None
    consent_purposes: tuple[str, ...] = ()
    page_path: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def imported(self) -> bool:
        """History sent through the import endpoint, not live traffic."""
        return self.properties.get(IMPORTED) in (True, "true")

    @property
    def product_id(self) -> str | None:
        return self.product_ids[0] if self.product_ids else None

    @property
    def category(self) -> str | None:
        return self.categories[0] if self.categories else None

    def fields(self) -> EventFields:
        """The ``event.*`` namespace of rule conditions and templates."""
        return EventFields(self)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _EVENT_FIELDS}
        for key in ("product_ids", "categories", "consent_purposes"):
            data[key] = list(data[key])
        data["properties"] = dict(self.properties)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventView:
        values = dict(data)
        for key in ("product_ids", "categories", "consent_purposes"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(EventView))
_LISTS = frozenset({"product_ids", "categories", "consent_purposes"})
_NAMESPACE = (*_EVENT_FIELDS, "product_id", "category")
_IN_NAMESPACE = frozenset(_NAMESPACE)


class LazyFields(Mapping[str, Any]):
    """A namespace of rules whose fields are built when a rule reads them (``EventFields``,
    ``triggers.profile.ProfileFields``): a subclass names them and builds one in ``__getitem__``."""

    __slots__ = ()
    names: ClassVar[tuple[str, ...]] = ()
    known: ClassVar[frozenset[str]] = frozenset()

    def __contains__(self, name: object) -> bool:
        return name in self.known

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class EventFields(LazyFields):
    """An event's fields as rules see them (its ``to_dict`` plus ``product_id`` and ``category``),
    each built when a rule reads it: rules read a few, and the dict of all was built per input.
    Lists and the properties come as fresh copies, as the dict gave them."""

    __slots__ = ("_view",)
    names = _NAMESPACE
    known = _IN_NAMESPACE

    def __init__(self, view: EventView) -> None:
        self._view = view

    def __getitem__(self, name: str) -> Any:
        if name in _LISTS:
            return list(getattr(self._view, name))
        if name == "properties":
            return dict(self._view.properties)
        if name in _IN_NAMESPACE:
            return getattr(self._view, name)
        raise KeyError(name)


def profile_key(customer_id: str | None, anonymous_id: str | None, user_id: str | None = None) -> str | None:
    """Who a record belongs to: the stitched customer id, else the user id, else the device."""
    return customer_id or user_id or anonymous_id


def _section(record: dict[str, Any], name: str) -> dict[str, Any]:
    """An optional nested record of the event, empty when absent."""
    section: dict[str, Any] = record.get(name) or {}
    return section


def _products(commerce: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Product ids, and categories (the event's own first) without repeats, in order."""
    products = commerce.get("products") or []
    product_ids = tuple(p["product_id"] for p in products if p.get("product_id"))
    categories = [p["category"] for p in products if p.get("category")]
    if commerce.get("category"):
        categories.insert(0, commerce["category"])
    return product_ids, tuple(dict.fromkeys(categories))


def _revenue(commerce: dict[str, Any]) -> float | None:
    """Segment's revenue, else the order total."""
    revenue = commerce.get("revenue")
    return commerce.get("total") if revenue is None else revenue


def event_view(record: dict[str, Any], enrichment: dict[str, Any] | None = None) -> EventView | None:
    """The view of an enriched Avro event dict (or of a raw one and its ``enrichment``); None
    when it belongs to nobody."""
    if enrichment is None:
        enrichment = _section(record, "enrichment")
    # The worker's stitched customer id only: a user id its identity guards refused ("undefined",
    # a shared test id) must not key a profile, or strangers would share one and its alerts.
    key = profile_key(enrichment.get("customer_id"), record.get("anonymous_id"))
    if key is None:
        return None
    when = enrichment.get("event_time") or record.get("timestamp") or record["received_at"]
    commerce = _section(record, "commerce")
    product_ids, categories = _products(commerce)
    email, application = _section(record, "email"), _section(record, "application")
    page = _section(_section(record, "context"), "page")
    call_type = str(record["type"])
    return EventView(
        message_id=record["message_id"],
        name=(record.get("event") or call_type) if call_type == "track" else call_type,
        call_type=call_type,
        channel=str(record.get("channel") or "server"),
        time=to_ms(when) or 0,
        customer_id=key,
        anonymous_id=record.get("anonymous_id"),
        user_id=record.get("user_id"),
        session_id=enrichment.get("session_id"),
        is_bot=bool(enrichment.get("is_bot")),
        product_ids=product_ids,
        categories=categories,
        revenue=_revenue(commerce),
        order_id=commerce.get("order_id"),
        campaign_id=email.get("campaign_id") or application.get("campaign_id"),
        link_url=email.get("link_url"),
        consent_purposes=tuple(_section(record, "consent").get("purposes") or ()),
        page_path=enrichment.get("url_path") or page.get("path"),
        properties={k: _json_value(v) for k, v in _section(record, "properties").items()},
    )


# -- the view with the enriched event ------------------------------------------------------

VIEW_HEADER = "webhouse-view"  # the view as ``view_json`` writes it; ``null``: nobody's, or a bot's
RECEIVED_HEADER = "webhouse-received-ms"  # the event's ``received_at``, epoch ms, in ASCII digits
_OPTIONAL = tuple(
    f.name
    for f in dataclasses.fields(EventView)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
)
_REQUIRED = tuple(f.name for f in dataclasses.fields(EventView) if f.name not in _OPTIONAL)


def view_json(view: EventView | None) -> bytes:
    """A view as compact JSON, the optional fields at their defaults left out
    (``EventView.from_dict`` puts them back): what the worker's header and the triggers topic
    carry. Fields in their declared order: the same view gives the same bytes."""
    if view is None or view.is_bot:
        return b"null"
    data = {name: getattr(view, name) for name in _REQUIRED}
    for name in _OPTIONAL:
        value = getattr(view, name)
        if not (value is None or value is False or value == () or value == {}):
            data[name] = value
    return fast_json.compact(data)


def view_headers(record: dict[str, Any], enrichment: dict[str, Any]) -> tuple[tuple[str, bytes], ...]:
    """The headers of an enriched event: its view (``view_json``) and when it was received."""
    received = to_ms(record["received_at"])
    return (
        (VIEW_HEADER, view_json(event_view(record, enrichment))),
        (RECEIVED_HEADER, b"%d" % (received or 0)),
    )


def header_view(headers: Iterable[tuple[str, str | bytes | None]]) -> tuple[bytes, int] | None:
    """The view JSON and received time an enriched event's headers carry; None without them
    (an event written by a worker from before 3 December 2026)."""
    view = received = None
    for name, value in headers:
        if name == VIEW_HEADER:
            view = value
        elif name == RECEIVED_HEADER:
            received = value
    if not isinstance(view, bytes) or not isinstance(received, bytes):
        return None
    return view, int(received)
