"""Segment's semantic track events mapped to the typed sub-records of the event model.

Which record an event fills is decided by its name alone (exact, case-sensitive, as the
Segment spec spells it); every other track event keeps all its properties in the string
map. Each mapper takes what its record types from the properties ``Source`` and leaves
the rest there.

- E-commerce: single-product events carry the product's fields at the top level of
  properties; the others carry a ``products`` list. Product keys the model does not know
  are kept as ``$properties.products.<i>.<key>`` (returned as leftovers).
- Consent: ``purposes`` (list) or a single ``purpose``; one of them is required.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.collector import coerce
from pipeline.collector.fields import Source, fill
from pipeline.errors import ValidationError

SINGLE_PRODUCT_EVENTS = frozenset({"Product Viewed", "Product Added", "Product Removed"})
PRODUCT_LIST_EVENTS = frozenset(
    {
        "Products Searched",
        "Product List Viewed",
        "Cart Viewed",
        "Checkout Started",
        "Checkout Step Viewed",
        "Order Completed",
        "Order Refunded",
    }
)
EMAIL_EVENTS = frozenset(
    {
        "Email Sent",
        "Email Delivered",
        "Email Opened",
        "Email Link Clicked",
        "Email Bounced",
        "Email Marked as Spam",
        "Unsubscribed",
    }
)
APPLICATION_EVENTS = frozenset(
    {
        "Application Installed",
        "Application Opened",
        "Application Backgrounded",
        "Application Updated",
        "Push Notification Received",
        "Push Notification Tapped",
    }
)
IDENTITY_EVENTS = frozenset({"Signed Up", "Signed In"})
CONSENT_EVENTS = frozenset({"Consent Granted", "Consent Withdrawn"})

Leftovers = dict[str, Any]


def _product(data: Any, path: str, leftovers: Leftovers) -> dict[str, Any]:
    source = Source(coerce.as_dict(data, path), path)
    product = fill("Product", source)
    for key, value in source.rest().items():
        leftovers[f"${path}.{key}"] = value
    return product


def commerce(event: str, props: Source, leftovers: Leftovers) -> dict[str, Any]:
    if event in SINGLE_PRODUCT_EVENTS:
        # The product's own fields go first: `category` and `coupon` belong to it here.
        product = fill("Product", props)
        record = fill("Commerce", props)
        record["products"] = [product] if any(v is not None for v in product.values()) else []
        return record
    record = fill("Commerce", props)
    products: list[dict[str, Any]] = []
    found = props.take_raw("products")
    if found is not None and found[1] is not None:
        key, value = found
        if not isinstance(value, list):
            raise coerce.invalid(f"{props.path}.{key}", "a list of products", value)
        products = [_product(p, f"{props.path}.{key}.{i}", leftovers) for i, p in enumerate(value)]
    record["products"] = products
    return record


def email(event: str, props: Source, leftovers: Leftovers) -> dict[str, Any]:
    return fill("Email", props)


def application(event: str, props: Source, leftovers: Leftovers) -> dict[str, Any]:
    record = fill("Application", props)
    # Segment's push events nest the campaign: {"campaign": {"name": .., "id": ..}}.
    nested = props.data.get("campaign")
    if isinstance(nested, dict) and "campaign" not in props.taken:
        campaign = Source(dict(nested), f"{props.path}.campaign")
        record["campaign_id"] = record["campaign_id"] or campaign.take("id", "string")
        record["campaign_name"] = record["campaign_name"] or campaign.take("name", "string")
        props.taken.add("campaign")
        if campaign.rest():
            leftovers[f"${props.path}.campaign"] = campaign.rest()
    return record


def identity(event: str, props: Source, leftovers: Leftovers) -> dict[str, Any]:
    record = fill("Traits", props)
    record["extra"] = {}
    return record


def consent(event: str, props: Source, leftovers: Leftovers) -> dict[str, Any]:
    record = fill("Consent", props)
    purposes: list[str] = []
    for name in ("purposes", "purpose"):
        found = props.take_raw(name)
        if found is None or found[1] is None:
            continue
        key, value = found
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            path = f"{props.path}.{key}" + (f".{i}" if isinstance(value, list) else "")
            if not isinstance(item, str) or not item.strip():
                raise coerce.invalid(path, "a non-empty purpose string", item)
            if item not in purposes:
                purposes.append(item)
    if not purposes:
        raise ValidationError("missing_field", f"{props.path}.purposes: a consent event names its purposes")
    record["purposes"] = purposes
    return record


Mapper = Callable[[str, Source, Leftovers], dict[str, Any]]

# event name -> (record field of customer_event, mapper)
SEMANTIC: dict[str, tuple[str, Mapper]] = {
    **{name: ("commerce", commerce) for name in SINGLE_PRODUCT_EVENTS | PRODUCT_LIST_EVENTS},
    **{name: ("email", email) for name in EMAIL_EVENTS},
    **{name: ("application", application) for name in APPLICATION_EVENTS},
    **{name: ("traits", identity) for name in IDENTITY_EVENTS},
    **{name: ("consent", consent) for name in CONSENT_EVENTS},
}
