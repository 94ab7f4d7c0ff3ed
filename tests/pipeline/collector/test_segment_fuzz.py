"""Whatever JSON a client sends, the mapping either returns an encodable record or raises a
ValidationError: never another exception (which would be a 500 and a lost event)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.collector.segment import map_event
from pipeline.collector.semantic import SEMANTIC
from pipeline.errors import ValidationError
from pipeline.serde import SingleObjectSerde

SERDE = SingleObjectSerde("customer_event")
RECEIVED = datetime(2026, 11, 23, 12, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
known_keys = st.sampled_from(
    [
        "product_id",
        "price",
        "quantity",
        "products",
        "purposes",
        "purpose",
        "campaign",
        "step",
        "revenue",
        "email",
        "firstName",
        "address",
        "company",
        "createdAt",
        "age",
        "url",
        "title",
        "from_background",
    ]
)
numbers = st.integers(min_value=0, max_value=1000) | st.floats(min_value=0, max_value=1e6)
# Mostly plausible values, so that many events map; sometimes anything at all.
plausible = st.text(max_size=6) | numbers | st.booleans() | st.none()
values = plausible | plausible | json_values
products = st.lists(
    st.dictionaries(st.sampled_from(["product_id", "price", "quantity", "colour"]), values, max_size=3),
    max_size=2,
)
timestamps = (
    st.sampled_from(["2026-11-23T10:00:00Z", "2026-11-23", "0001-01-01T00:00:00+01:00"])
    | st.none()
    | json_values
)
events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "page", "screen", "alias", "group", "click"]),
        "event": st.sampled_from(sorted(SEMANTIC)) | st.text(max_size=6) | json_values,
        "anonymousId": st.sampled_from(["a1", ""]) | json_values,
        "timestamp": timestamps,
        "properties": st.dictionaries(known_keys | st.text(max_size=6), values | products, max_size=5),
        "traits": st.dictionaries(known_keys, values, max_size=4),
        "context": st.dictionaries(
            st.sampled_from(["page", "device", "app", "screen", "channel", "library", "ip", "network"]),
            st.dictionaries(st.sampled_from(["url", "name", "width", "density", "id"]), values, max_size=2)
            | values,
            max_size=3,
        ),
    },
    optional={"userId": values, "previousId": values, "groupId": values, "sentAt": timestamps},
)


@settings(max_examples=600, deadline=None)
@given(events)
def test_any_json_maps_or_is_rejected_with_a_reason(raw: dict[str, Any]) -> None:
    try:
        record = map_event(raw, received_at=RECEIVED, source="s")
    except ValidationError as exc:
        assert exc.reason and exc.detail
        return
    decoded = SERDE.decode(SERDE.encode(record))
    assert decoded == record
    assert all(isinstance(json.loads(v), object) for v in record["properties"].values())
