"""Segment event JSON -> customer_event record: every semantic event, every call type, every reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.collector.segment import CHANNELS, BatchDefaults, canonical_json, check_size, map_event
from pipeline.errors import ValidationError
from pipeline.serde import SingleObjectSerde

RECEIVED = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
SERDE = SingleObjectSerde("customer_event")

PRODUCT = {
    "product_id": "507f1f77",
    "sku": "G-32",
    "category": "Games",
    "name": "Monopoly: 3rd Edition",
    "brand": "Hasbro",
    "variant": "200 pieces",
    "price": 18.99,
    "quantity": 1,
    "coupon": "MAYDEALS",
    "position": 3,
    "url": "https://www.example.com/product/path",
    "image_url": "https://www.example.com/product/path.jpg",
}


def track(event: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "anonymousId": "anon-1",
        "messageId": f"m-{event}",
        "timestamp": "2026-11-23T11:59:58.250Z",
        "properties": properties,
        **extra,
    }


def mapped(raw: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    record = map_event(raw, received_at=RECEIVED, source="web-shop", **kwargs)
    assert SERDE.decode(SERDE.encode(record)) == record, "the record must survive the Avro round trip"
    return record


def props(record: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in record["properties"].items()}


# (event, properties, sub-record field, expected values in that sub-record, properties left over)
SEMANTIC_CASES: list[tuple[str, dict[str, Any], str, dict[str, Any], dict[str, Any]]] = [
    (
        "Products Searched",
        {"query": "blue hotpants"},
        "commerce",
        {"query": "blue hotpants", "products": []},
        {},
    ),
    (
        "Product List Viewed",
        {
            "list_id": "hot_deals_1",
            "category": "Deals",
            "products": [PRODUCT, {"product_id": "x", "colour": "red"}],
        },
        "commerce",
        {"list_id": "hot_deals_1", "category": "Deals"},
        {"$properties.products.1.colour": "red"},
    ),
    (
        "Product Viewed",
        {**PRODUCT, "currency": "USD", "value": 18.99},
        "commerce",
        {"currency": "USD"},
        {"value": 18.99},
    ),
    (
        "Product Added",
        {"cart_id": "skdjsidjsdkdj29j", **PRODUCT},
        "commerce",
        {"cart_id": "skdjsidjsdkdj29j"},
        {},
    ),
    ("Product Removed", {"cart_id": "c-9", **PRODUCT}, "commerce", {"cart_id": "c-9"}, {}),
    ("Cart Viewed", {"cart_id": "c-9", "products": [PRODUCT]}, "commerce", {"cart_id": "c-9"}, {}),
    (
        "Checkout Started",
        {
            "order_id": "50314b8e",
            "affiliation": "Google Store",
            "value": 30,
            "revenue": 25.0,
            "shipping": 3,
            "tax": 2,
            "discount": 2.5,
            "coupon": "hasbros",
            "currency": "USD",
            "products": [PRODUCT],
        },
        "commerce",
        {
            "order_id": "50314b8e",
            "affiliation": "Google Store",
            "revenue": 25.0,
            "shipping": 3.0,
            "tax": 2.0,
            "discount": 2.5,
            "coupon": "hasbros",
            "currency": "USD",
        },
        {"value": 30},
    ),
    (
        "Checkout Step Viewed",
        {"checkout_id": "50314b8e", "step": 2, "shipping_method": "Fedex", "payment_method": "Visa"},
        "commerce",
        {"checkout_id": "50314b8e", "step": 2, "shipping_method": "Fedex", "payment_method": "Visa"},
        {},
    ),
    (
        "Order Completed",
        {
            "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
            "order_id": "50314b8e9bcf000000000000",
            "total": 27.5,
            "subtotal": 22.5,
            "revenue": 25.00,
            "shipping": 3,
            "tax": 2,
            "discount": 2.5,
            "coupon": "hasbros",
            "currency": "USD",
            "products": [PRODUCT, {"product_id": 505, "price": "9.5", "quantity": 2.0}],
        },
        "commerce",
        {
            "order_id": "50314b8e9bcf000000000000",
            "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
            "total": 27.5,
            "subtotal": 22.5,
            "revenue": 25.0,
            "currency": "USD",
        },
        {},
    ),
    (
        "Order Refunded",
        {"order_id": "50314b8e", "total": 30, "currency": "EUR"},
        "commerce",
        {"order_id": "50314b8e", "total": 30.0, "currency": "EUR", "products": []},
        {},
    ),
    (
        "Email Sent",
        {"campaign_id": "c1", "campaign_name": "Winter", "email_id": "e1", "email_subject": "Hi"},
        "email",
        {"campaign_id": "c1", "campaign_name": "Winter", "email_id": "e1", "email_subject": "Hi"},
        {},
    ),
    (
        "Email Delivered",
        {"campaign_id": "c1", "send_id": "s1", "provider": "mailgun"},
        "email",
        {"send_id": "s1", "provider": "mailgun"},
        {},
    ),
    ("Email Opened", {"campaign_id": "c1", "send_id": "s1"}, "email", {"campaign_id": "c1"}, {}),
    (
        "Email Link Clicked",
        {"send_id": "s1", "link_url": "https://shop.example/x", "link_id": "l7"},
        "email",
        {"link_url": "https://shop.example/x"},
        {"link_id": "l7"},
    ),
    (
        "Email Bounced",
        {"send_id": "s1", "bounce_type": "hard", "reason": "550 no such user"},
        "email",
        {"bounce_type": "hard", "reason": "550 no such user"},
        {},
    ),
    ("Email Marked as Spam", {"send_id": "s1"}, "email", {"send_id": "s1"}, {}),
    ("Unsubscribed", {"list_id": "newsletter", "campaign_id": "c1"}, "email", {"list_id": "newsletter"}, {}),
    (
        "Application Installed",
        {"version": "1.1.2", "build": 1234},
        "application",
        {"version": "1.1.2", "build": "1234"},
        {},
    ),
    (
        "Application Opened",
        {"from_background": False, "referring_application": "GMail", "url": "app://x", "version": "1.1.2"},
        "application",
        {"from_background": False, "referring_application": "GMail", "url": "app://x"},
        {},
    ),
    ("Application Backgrounded", {}, "application", {"version": None}, {}),
    (
        "Push Notification Received",
        {"campaign": {"id": "p7", "name": "Sale", "medium": "push"}, "push_id": "n1"},
        "application",
        {"campaign_id": "p7", "campaign_name": "Sale", "push_id": "n1"},
        {"$properties.campaign": {"medium": "push"}},
    ),
    (
        "Push Notification Tapped",
        {"campaign_id": "p7", "action": "open"},
        "application",
        {"campaign_id": "p7", "action": "open"},
        {},
    ),
    (
        "Signed Up",
        {"type": "organic", "email": "ada@example.com", "firstName": "Ada", "username": "ada"},
        "traits",
        {"email": "ada@example.com", "first_name": "Ada", "username": "ada", "extra": {}},
        {"type": "organic"},
    ),
    ("Signed In", {"username": "ada"}, "traits", {"username": "ada"}, {}),
    (
        "Consent Granted",
        {"purposes": ["analytics", "marketing_email"], "source": "banner", "policy_version": 3},
        "consent",
        {"purposes": ["analytics", "marketing_email"], "source": "banner", "policy_version": "3"},
        {},
    ),
    (
        "Consent Withdrawn",
        {"purpose": "marketing_email", "source": "email_footer"},
        "consent",
        {"purposes": ["marketing_email"], "source": "email_footer"},
        {},
    ),
]


@pytest.mark.parametrize(
    ("event", "properties", "target", "expected", "rest"), SEMANTIC_CASES, ids=[c[0] for c in SEMANTIC_CASES]
)
def test_semantic_events_fill_their_typed_record(
    event: str, properties: dict[str, Any], target: str, expected: dict[str, Any], rest: dict[str, Any]
) -> None:
    record = mapped(track(event, properties))
    assert record["event"] == event
    sub = record[target]
    assert sub is not None
    for key, value in expected.items():
        assert sub[key] == value, key
    others = {"commerce", "email", "application", "traits", "consent"} - {target}
    assert all(record[name] is None for name in others)
    assert props(record) == rest


@pytest.mark.parametrize("event", ["Product Viewed", "Product Added", "Product Removed"])
def test_single_product_events_take_the_product_from_top_level_properties(event: str) -> None:
    record = mapped(track(event, {**PRODUCT, "cart_id": "c-1"}))
    (product,) = record["commerce"]["products"]
    assert product == PRODUCT
    # `category` and `coupon` describe the product here, not the cart.
    assert record["commerce"]["category"] is None and record["commerce"]["coupon"] is None


def test_product_lists_are_typed_and_coerced_losslessly() -> None:
    record = mapped(
        track(
            "Order Completed", {"products": [PRODUCT, {"product_id": 505, "price": "9.5", "quantity": 2.0}]}
        )
    )
    first, second = record["commerce"]["products"]
    assert first == PRODUCT
    assert (second["product_id"], second["price"], second["quantity"]) == ("505", 9.5, 2)


def test_unknown_track_event_keeps_every_property() -> None:
    properties = {"plan": "pro", "seats": 4, "nested": {"a": [1, 2]}, "flag": None}
    record = mapped(track("Trial Extended", properties))
    assert props(record) == properties
    assert all(record[k] is None for k in ("commerce", "email", "application", "traits", "consent"))


def test_identify_maps_traits_and_keeps_unknown_ones_in_extra() -> None:
    raw = {
        "type": "identify",
        "userId": 97980,
        "anonymousId": "anon-1",
        "traits": {
            "email": "peter@example.com",
            "firstName": "Peter",
            "last_name": "Gibbons",
            "phone": "555-555-5555",
            "age": "34",
            "birthday": "1990-04-01",
            "createdAt": "2015-02-23T22:28:55.111Z",
            "plan": "premium",
            "address": {"city": "Austin", "state": "TX", "postalCode": "78701", "street": "6th St"},
            "company": {"name": "Initech", "industry": "Technology"},
            "logins": 5,
        },
    }
    record = mapped(raw, implied_type="identify")
    traits = record["traits"]
    assert record["user_id"] == "97980"
    assert (traits["email"], traits["first_name"], traits["last_name"]) == (
        "peter@example.com",
        "Peter",
        "Gibbons",
    )
    assert traits["age"] == 34 and traits["plan"] == "premium" and traits["birthday"] == "1990-04-01"
    assert traits["created_at"] == datetime(2015, 2, 23, 22, 28, 55, 111000, tzinfo=UTC)
    assert (traits["city"], traits["region"], traits["postal_code"]) == ("Austin", "TX", "78701")
    assert traits["company"] == "Initech"
    extra = {k: json.loads(v) for k, v in traits["extra"].items()}
    assert extra == {"logins": 5, "address": {"street": "6th St"}, "company": {"industry": "Technology"}}


def test_identify_traits_from_context_traits_as_rudderstack_sends_them() -> None:
    """RudderStack SDKs send an identify's traits only in context.traits."""
    raw = {
        "type": "identify",
        "userId": "u1",
        "context": {"traits": {"email": "ada@example.com", "firstName": "Ada", "tier": "gold"}},
    }
    record = mapped(raw)
    traits = record["traits"]
    assert (traits["email"], traits["first_name"]) == ("ada@example.com", "Ada")
    assert {k: json.loads(v) for k, v in traits["extra"].items()} == {"tier": "gold"}
    assert "$context.traits" not in record["properties"]


def test_identify_traits_win_over_context_traits_per_key_unless_null() -> None:
    raw = {
        "type": "identify",
        "userId": "u1",
        "traits": {"email": "new@example.com", "phone": None, "age": 40},
        "context": {"traits": {"email": "old@example.com", "phone": "+44 20 7946 0000", "city": "Leeds"}},
    }
    traits = mapped(raw)["traits"]
    assert (traits["email"], traits["phone"], traits["age"], traits["city"]) == (
        "new@example.com",
        "+44 20 7946 0000",
        40,
        "Leeds",
    )


def test_group_keeps_group_traits_apart_and_takes_the_person_from_context_traits() -> None:
    raw = {
        "type": "group",
        "userId": "u1",
        "groupId": "g1",
        "traits": {"name": "Initech"},
        "context": {"traits": {"name": "Peter Gibbons", "email": "peter@example.com"}},
    }
    record = mapped(raw)
    assert (record["traits"]["name"], record["traits"]["email"]) == ("Peter Gibbons", "peter@example.com")
    assert props(record) == {"$traits.name": "Initech"}


def test_other_calls_keep_context_traits_as_they_came() -> None:
    record = mapped(track("Trial Extended", {}, context={"traits": {"plan": "pro"}}))
    assert record["traits"] is None
    assert props(record) == {"$context.traits": {"plan": "pro"}}


def test_page_call_fills_context_page_from_its_properties() -> None:
    raw = {
        "type": "page",
        "name": "Home",
        "anonymousId": "a",
        "category": "Docs",
        "properties": {
            "url": "https://shop.example/?utm_source=x",
            "path": "/",
            "title": "Shop",
            "theme": "dark",
        },
        "context": {"page": {"referrer": "https://google.com/"}},
    }
    record = mapped(raw)
    assert record["name"] == "Home" and record["channel"] == "web"
    assert record["context"]["page"] == {
        "url": "https://shop.example/?utm_source=x",
        "path": "/",
        "referrer": "https://google.com/",
        "title": "Shop",
        "search": None,
    }
    assert props(record) == {"theme": "dark", "$category": "Docs"}


def test_screen_alias_group_calls() -> None:
    screen = mapped({"type": "screen", "name": "Cart", "userId": "u1", "properties": {"items": 2}})
    assert (screen["name"], screen["channel"], props(screen)) == ("Cart", "app", {"items": 2})
    alias = mapped({"type": "alias", "previousId": "anon-1", "userId": "u1"})
    assert (alias["previous_id"], alias["user_id"], alias["anonymous_id"]) == ("anon-1", "u1", None)
    group = mapped(
        {"type": "group", "groupId": "g-1", "userId": "u1", "traits": {"name": "Initech", "employees": 90}}
    )
    assert group["group_id"] == "g-1" and group["traits"] is None
    assert props(group) == {"$traits.name": "Initech", "$traits.employees": 90}


def test_context_maps_to_typed_records_and_unknown_keys_are_kept() -> None:
    raw = track(
        "Trial Extended",
        {},
        context={
            "ip": "203.0.113.9",
            "userAgent": "Mozilla/5.0",
            "locale": "en-GB",
            "timezone": "Europe/London",
            "campaign": {"source": "news", "medium": "email", "name": "winter", "term": "t", "content": "c"},
            "device": {
                "id": "d1",
                "type": "ios",
                "manufacturer": "Apple",
                "model": "iPhone7,2",
                "advertisingId": "ad",
            },
            "os": {"name": "iOS", "version": "17.1"},
            "app": {"name": "Shop", "version": "1.2", "build": 42, "namespace": "com.shop"},
            "screen": {"width": 320, "height": 568, "density": 2},
            "library": {"name": "analytics-ios", "version": "4.1"},
            "network": {"wifi": True},
            "traits": {"email": "x@example.com"},
        },
    )
    record = mapped(raw)
    context = record["context"]
    assert context["campaign"]["name"] == "winter" and context["device"]["advertising_id"] == "ad"
    assert context["app"]["build"] == "42" and context["screen"] == {
        "width": 320,
        "height": 568,
        "density": 2.0,
    }
    assert (context["ip"], context["user_agent"], context["timezone"]) == (
        "203.0.113.9",
        "Mozilla/5.0",
        "Europe/London",
    )
    assert record["channel"] == "app"
    assert props(record) == {
        "$context.network": {"wifi": True},
        "$context.traits": {"email": "x@example.com"},
    }


@pytest.mark.parametrize(
    ("raw_extra", "event", "expected"),
    [
        ({"context": {"channel": "email"}}, "Trial Extended", "email"),  # explicit wins
        ({"context": {"channel": "server"}, "properties": {}}, "Email Opened", "server"),
        ({}, "Email Opened", "email"),
        ({}, "Application Opened", "app"),
        ({"context": {"library": {"name": "analytics-android"}}}, "Trial Extended", "app"),
        ({"context": {"page": {"url": "https://x"}}}, "Trial Extended", "web"),
        ({"context": {"library": {"name": "analytics.js"}}}, "Trial Extended", "web"),
        ({"channel": "browser"}, "Trial Extended", "web"),  # Segment's own top-level channel
        ({"channel": "mobile"}, "Trial Extended", "app"),
        ({"channel": "server"}, "Trial Extended", "server"),
        # rudder-sdk-python's constant "server" does not beat what the event shows
        ({"channel": "server", "context": {"page": {"url": "https://x"}}}, "Trial Extended", "web"),
        ({"channel": "server", "context": {"app": {"name": "Shop"}}}, "Trial Extended", "app"),
        ({"channel": "server", "context": {"channel": "server", "app": {}}}, "Trial Extended", "server"),
        ({"context": {"library": {"name": "analytics-python"}}}, "Trial Extended", "server"),
    ],
)
def test_channel(raw_extra: dict[str, Any], event: str, expected: str) -> None:
    raw = {**track(event, {}), **raw_extra}
    record = mapped(raw)
    assert record["channel"] == expected
    claimed = raw_extra.get("channel")
    kept = props(record).get("$channel")
    assert kept == (claimed if claimed and CHANNELS[claimed] != expected else None)


def test_a_page_call_from_a_server_library_is_web() -> None:
    raw = {
        "type": "page",
        "name": "Home",
        "userId": "u1",
        "channel": "server",
        "properties": {"url": "https://x/"},
    }
    record = mapped(raw)
    assert record["channel"] == "web"
    assert props(record) == {"$channel": "server"}


def test_clock_fields_and_batch_defaults() -> None:
    raw = track("Trial Extended", {}, sentAt="2026-11-23T11:59:59+01:00")
    record = mapped(raw)
    assert record["timestamp"] == datetime(2026, 11, 23, 11, 59, 58, 250000, tzinfo=UTC)
    assert record["sent_at"] == datetime(2026, 11, 23, 10, 59, 59, tzinfo=UTC)
    assert record["received_at"] == datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=UTC)
    # originalTimestamp (client clock) wins over an already-corrected timestamp, which is kept.
    forwarded = {**raw, "originalTimestamp": "2026-11-23T11:00:00Z"}
    record = mapped(forwarded)
    assert record["timestamp"] == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert props(record) == {"$timestamp": "2026-11-23T11:59:58.250Z"}
    # A batch's sentAt and context apply to events that lack their own.
    bare = {k: v for k, v in raw.items() if k != "sentAt"}
    defaults = BatchDefaults(sent_at="2026-11-23T11:59:59Z", context={"ip": "198.51.100.1", "locale": "de"})
    record = mapped({**bare, "context": {"locale": "fr"}}, defaults=defaults)
    assert record["sent_at"] == datetime(2026, 11, 23, 11, 59, 59, tzinfo=UTC)
    assert (record["context"]["ip"], record["context"]["locale"]) == ("198.51.100.1", "fr")


def test_message_id_is_kept_or_derived_deterministically() -> None:
    raw = track("Trial Extended", {"a": 1})
    assert mapped(raw)["message_id"] == "m-Trial Extended"
    del raw["messageId"]
    first = mapped(raw)["message_id"]
    assert first == mapped(json.loads(json.dumps(raw)))["message_id"]  # a retry of the same body
    assert first != mapped({**raw, "properties": {"a": 2}})["message_id"]
    assert first == mapped({**raw, "writeKey": "k"})["message_id"]  # the credential is not content
    # Without any client time, nothing tells two sends apart but the server clock.
    untimed = {k: v for k, v in raw.items() if k != "timestamp"}
    later = map_event(untimed, received_at=datetime(2026, 11, 23, 13, tzinfo=UTC), source=None)
    assert mapped(untimed)["message_id"] != later["message_id"]


def test_write_key_never_enters_the_record() -> None:
    record = mapped({**track("Trial Extended", {}), "writeKey": "secret"})
    assert "secret" not in json.dumps(record, default=str)


@pytest.mark.parametrize(
    ("raw", "reason", "in_detail"),
    [
        ([1, 2], "invalid_event", "object"),
        ({"event": "X", "anonymousId": "a"}, "invalid_type", "missing"),
        ({"type": "click", "anonymousId": "a"}, "invalid_type", "click"),
        ({"type": "track", "event": "X"}, "missing_id", "userId"),
        ({"type": "track", "event": "X", "userId": "", "anonymousId": None}, "missing_id", "userId"),
        ({"type": "alias", "userId": "u1"}, "missing_id", "previousId"),
        ({"type": "group", "userId": "u1"}, "missing_field", "groupId"),
        ({"type": "track", "anonymousId": "a"}, "missing_event_name", "event"),
        ({"type": "track", "anonymousId": "a", "event": "  "}, "missing_event_name", "event"),
        (
            {"type": "track", "anonymousId": "a", "event": "X", "timestamp": "yesterday"},
            "invalid_timestamp",
            "timestamp",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "X", "sentAt": 1700000000},
            "invalid_timestamp",
            "sentAt",
        ),
        (
            {
                "type": "track",
                "anonymousId": "a",
                "event": "Order Completed",
                "properties": {"revenue": "lots"},
            },
            "invalid_field",
            "properties.revenue",
        ),
        (
            {
                "type": "track",
                "anonymousId": "a",
                "event": "Order Completed",
                "properties": {"products": [{"quantity": 1.5}]},
            },
            "invalid_field",
            "properties.products.0.quantity",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "Cart Viewed", "properties": {"products": "p1"}},
            "invalid_field",
            "properties.products",
        ),
        (
            {
                "type": "track",
                "anonymousId": "a",
                "event": "Checkout Step Viewed",
                "properties": {"step": 2**40},
            },
            "invalid_field",
            "properties.step",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "Product Viewed", "properties": {"price": True}},
            "invalid_field",
            "properties.price",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "X", "properties": "a=1"},
            "invalid_field",
            "properties",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "X", "context": {"channel": "sms"}},
            "invalid_field",
            "context.channel",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "X", "context": {"screen": {"width": "wide"}}},
            "invalid_field",
            "context.screen.width",
        ),
        (
            {"type": "identify", "anonymousId": "a", "traits": {"createdAt": "last week"}},
            "invalid_timestamp",
            "traits.createdAt",
        ),
        (
            {"type": "track", "anonymousId": "a", "event": "Consent Granted", "properties": {}},
            "missing_field",
            "purposes",
        ),
        (
            {
                "type": "track",
                "anonymousId": "a",
                "event": "Consent Granted",
                "properties": {"purposes": ["ads", 3]},
            },
            "invalid_field",
            "properties.purposes.1",
        ),
    ],
)
def test_invalid_events_get_a_reason_and_the_field(raw: Any, reason: str, in_detail: str) -> None:
    with pytest.raises(ValidationError) as caught:
        map_event(raw, received_at=RECEIVED, source=None)
    assert caught.value.reason == reason
    assert in_detail in caught.value.detail


def test_endpoint_type_is_implied_and_enforced() -> None:
    body = {"event": "X", "anonymousId": "a"}
    assert map_event(body, received_at=RECEIVED, source=None, implied_type="track")["type"] == "track"
    with pytest.raises(ValidationError) as caught:
        map_event({**body, "type": "page"}, received_at=RECEIVED, source=None, implied_type="track")
    assert caught.value.reason == "invalid_type"


def test_event_size_limit() -> None:
    raw = track("Trial Extended", {"blob": "x" * 1000})
    check_size(raw, 2000)
    with pytest.raises(ValidationError) as caught:
        check_size(raw, 1000)
    assert caught.value.reason == "event_too_large"


_TEXT = st.text(st.characters(blacklist_categories=()), max_size=8)  # lone surrogates too
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(_JSON, st.integers(min_value=1, max_value=400))
@example({"x": 1e-07}, 10)  # canonical {"x":1e-07} is 11 bytes, orjson's 10: a bound of 1x would pass it
@example(["\ud800"], 400)
@example(2**64, 400)
def test_the_size_check_answers_as_the_canonical_measure_alone(raw: Any, limit: int) -> None:
    """orjson's measure only lets through what the canonical JSON's does: lone surrogates,
    integers past 64 bits and events near the limit are measured exactly."""

    def exact() -> str | None:
        try:
            size = len(canonical_json(raw))
        except UnicodeEncodeError:
            return "invalid_unicode"
        return "event_too_large" if size > limit else None

    try:
        check_size(raw, limit)
        verdict = None
    except ValidationError as caught:
        verdict = caught.reason
    assert verdict == exact()
