"""Whatever a client sends, never a 5xx: the mapping either returns an encodable record or
raises a ValidationError (never another exception), and the whole collector, over HTTP with
the real broker, answers every generated body with a 2xx/4xx, keeps serving, and writes a
dead letter for every event (or request) it refuses."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.collector.pseudonymise import Pseudonymiser
from pipeline.collector.segment import map_event
from pipeline.collector.semantic import SEMANTIC
from pipeline.collector.server import ThreadedCollector
from pipeline.errors import ValidationError
from pipeline.serde import SingleObjectSerde
from pipeline.settings import CollectorPiiSettings, KafkaSettings
from pipeline.topics import Topics
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records

SERDE = SingleObjectSerde("customer_event")
PSEUDONYMISER = Pseudonymiser.from_settings(CollectorPiiSettings(), "fuzz")
RECEIVED = datetime(2026, 11, 23, 12, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
# Members of nested objects: any name, or one the mapping or the pseudonymiser gives a meaning
# elsewhere (a nested "extra" was once taken for traits.extra and refused the event).
member_names = st.text(max_size=6) | st.sampled_from(
    ["extra", "properties", "traits", "email", "phone", "ip"]
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(member_names, inner, max_size=3),
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
numbers = (
    st.integers(min_value=0, max_value=1000)
    | st.floats(min_value=0, max_value=1e6)
    | st.sampled_from([10**400, -(10**400), 2**63, 1e308])  # past float, past Avro long
)
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
        record = PSEUDONYMISER.record(map_event(raw, received_at=RECEIVED, source="s"))
    except ValidationError as exc:
        assert exc.reason and exc.detail
        return
    decoded = SERDE.decode(SERDE.encode(record))
    assert decoded == record
    assert all(isinstance(json.loads(v), object) for v in record["properties"].values())


untyped_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.emails()
    | st.just("+44 20 7946 0000")
)
untyped = st.recursive(
    untyped_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(member_names, inner, max_size=3),
    max_leaves=10,
)
untyped_members = st.dictionaries(st.text(max_size=6).map("x_".__add__), untyped, max_size=4)


@settings(max_examples=300, deadline=None)
@given(untyped_members, untyped_members)
def test_any_untyped_json_in_properties_and_traits_is_accepted(properties: Any, traits: Any) -> None:
    """Properties and traits the schema does not type are the client's own: any JSON there maps,
    is pseudonymised and encodes, whatever its members are named."""
    raw = {"type": "identify", "userId": "u-1", "properties": properties, "traits": traits}
    record = PSEUDONYMISER.record(map_event(raw, received_at=RECEIVED, source="s"))
    assert SERDE.decode(SERDE.encode(record)) == record


# -- The whole collector over HTTP, against the real broker ----------------------------------
# Bodies as clients (and attackers) send them: deep, wide, wrong types, huge numbers, odd
# unicode, bytes that are not UTF-8, gzip or not. FUZZ_BODIES sets how many (CI: the default;
# the run: FUZZ_BODIES=10000).
FUZZ_BODIES = int(os.environ.get("FUZZ_BODIES", "400"))
AUTH = (WRITE_KEY, "")


def _nested(depth: int, wide: bool) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if wide else ("[" * depth + "]" * depth)


@st.composite
def _hostile_event_text(draw: st.DrawFn) -> str:
    """One event as JSON text: a generated event with one hostile part spliced in."""
    kind = draw(st.sampled_from(["plain", "valid", "valid", "deep", "wide", "huge", "unicode", "time"]))
    if kind == "valid":  # well-formed, with anything as property values, e-mails and phones among them
        free = (
            st.text(max_size=12)
            | st.emails()
            | st.just("+44 20 7946 0000")
            | st.sampled_from(["?email=a@b.co"])
        )
        keys = st.sampled_from(["email", "phone", "mobile", "user_email", "note", "url"]) | st.text(
            max_size=6
        ).map("x_".__add__)
        props = draw(st.dictionaries(keys, free | numbers, max_size=6))
        user = draw(st.none() | st.emails() | st.text(min_size=1, max_size=8))
        valid = {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "a1",
            "userId": user,
            "properties": props,
        }
        return json.dumps(valid, ensure_ascii=draw(st.booleans()))
    base = {"type": "track", "event": "Product Viewed", "anonymousId": "a1", **draw(events)}
    text = json.dumps(base, ensure_ascii=draw(st.booleans()))
    if kind == "deep":
        depth = draw(st.sampled_from([30, 33, 200, 990, 3000, 12000]) | st.integers(1, 1100))
        return text[:-1] + ',"deep":' + _nested(depth, draw(st.booleans())) + "}"
    if kind == "wide":
        width = draw(st.integers(900, 3000))
        return text[:-1] + ',"wide":{' + ",".join(f'"k{i}":{i}' for i in range(width)) + "}}"
    if kind == "huge":
        number = draw(st.sampled_from(["1e400", "-1e400", "9" * 5000, "9" * 400, "9" * 300, "1e-400", "NaN"]))
        key = draw(st.sampled_from(["price", "quantity", "revenue", "timestamp", "messageId"]))
        return text[:-1] + f',"properties":{{"{key}":{number}}},"{key}":{number}}}'
    if kind == "unicode":
        odd = draw(st.text(min_size=1, max_size=8) | st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e"]))
        return text[:-1] + ',"userId":' + json.dumps(odd) + "," + json.dumps(odd) + ":1}"
    if kind == "time":
        when = draw(st.sampled_from(["3000-01-01T00:00:00Z", "1900-01-01", "1999-12-31T23:59:59Z"]))
        return text[:-1] + f',"timestamp":"{when}","sentAt":null}}'
    return text


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    endpoint = draw(st.sampled_from(["batch", "batch", "import", "track", "identify", "page"]))
    shape = draw(st.sampled_from(["events", "events", "events", "binary", "latin1", "not_object"]))
    if shape == "binary":
        body = draw(st.binary(max_size=200))
    elif shape == "not_object":
        body = json.dumps(draw(json_values)).encode()
    else:
        texts = draw(st.lists(_hostile_event_text(), min_size=1, max_size=4))
        text = texts[0] if endpoint not in ("batch", "import") else '{"batch":[' + ",".join(texts) + "]}"
        body = text.encode("utf-8", "surrogatepass")
        if shape == "latin1":
            body = body.replace(b'"a1"', '"\xe9t\xe9"'.encode("latin-1"), 1)
    headers = {"Content-Type": "application/json"}
    if draw(st.booleans()):
        body = gzip.compress(body)
        if draw(st.integers(0, 9)) == 0:
            body = body[: len(body) // 2]
        headers["Content-Encoding"] = "gzip"
    return endpoint, body, headers


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(max(300, FUZZ_BODIES // 4))  # ~10 bodies a second on a busy 2-core machine
def test_no_body_gets_a_5xx_and_every_refused_event_is_a_dead_letter(kafka_settings: KafkaSettings) -> None:
    tally = {"accepted": 0, "letters": 0, "bodies": 0}
    with ThreadedCollector(collector_settings(kafka_settings)) as collector, requests.Session() as http:

        @settings(
            max_examples=FUZZ_BODIES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(hostile_bodies())
        def send(case: tuple[str, bytes, dict[str, str]]) -> None:
            endpoint, body, headers = case
            answer = http.post(f"{collector.url}/v1/{endpoint}", data=body, headers=headers, auth=AUTH)
            assert answer.status_code < 500, (answer.status_code, answer.text[:300])
            reply = answer.json()
            tally["bodies"] += 1
            if "errors" in reply:  # events looked at one by one
                assert reply["rejected"] == len(reply["errors"])
                tally["accepted"] += reply["accepted"]
                tally["letters"] += reply["rejected"]
            else:  # the whole request refused; dead-lettered unless unread or unauthenticated
                assert answer.status_code in (400, 401, 413, 415), reply
                tally["letters"] += answer.status_code not in (401, 413)

        send()
        # Still serving, and still taking good events.
        assert http.get(f"{collector.url}/health").status_code == 200
        good = {"type": "track", "event": "Still Here", "anonymousId": "a-ok"}
        assert http.post(f"{collector.url}/v1/track", json=good, auth=AUTH).status_code == 200
        tally["accepted"] += 1
        unexpected = collector.metrics.registry.get_sample_value(
            "webhouse_collector_unexpected_errors_total", {"stage": "request"}
        )

    print(f"fuzz: {tally}, unexpected request errors: {unexpected or 0}")
    topics = Topics.from_settings(kafka_settings)
    letters = read_records(
        kafka_settings.bootstrap_servers, topics.dead_letters, tally["letters"], schema="dead_letter"
    )
    assert len(letters) == tally["letters"]
    events_landed = read_records(kafka_settings.bootstrap_servers, topics.raw_events, tally["accepted"])
    assert len(events_landed) == tally["accepted"]
    assert tally["bodies"] >= FUZZ_BODIES
