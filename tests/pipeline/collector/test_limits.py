"""Event shape and time limits: refused per event with a reason, never a RecursionError."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from pipeline.collector import coerce
from pipeline.collector.limits import (
    EventLimits,
    check_event_time,
    check_shape,
    cut_deep,
    dead_letter_payload,
)
from pipeline.collector.segment import canonical_json, map_event
from pipeline.collector.server import ThreadedCollector
from pipeline.errors import ValidationError
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
LIMITS = EventLimits()


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_depth_and_key_limits() -> None:
    check_shape({"properties": deep(LIMITS.max_depth - 2)}, LIMITS)
    for too_deep in (LIMITS.max_depth, 990, 20000):
        with pytest.raises(ValidationError) as err:
            check_shape({"properties": deep(too_deep)}, LIMITS)
        assert err.value.reason == "too_deep"
    with pytest.raises(ValidationError) as err:
        check_shape({"properties": {f"k{i}": i for i in range(LIMITS.max_keys)}}, LIMITS)
    assert err.value.reason == "too_many_keys"


def test_a_dead_letter_keeps_any_depth_as_canonical_json() -> None:
    event = {"b": [1, {"y": None, "x": "é"}], "a": "\u202e", "deep": deep(20000)}
    payload = dead_letter_payload(event)
    assert payload.startswith(b'{"a":"\xe2\x80\xae","b":[1,{"x":"\xc3\xa9","y":null}],"deep":{"a":{"a":')
    shallow = {"b": [1, {"y": None, "x": "é"}], "a": 2.5}
    assert dead_letter_payload(shallow) == canonical_json(shallow)
    assert b"\\udc80" in dead_letter_payload({"a": "\udc80"})


def record(timestamp: str | None, sent_at: str | None = None) -> dict[str, Any]:
    raw = {"type": "track", "event": "E", "anonymousId": "a", "timestamp": timestamp, "sentAt": sent_at}
    return map_event(raw, received_at=NOW, source="s")


@pytest.mark.parametrize(
    ("timestamp", "sent_at", "ok"),
    [
        ("2026-11-23T11:00:00Z", None, True),
        ("2000-01-01T00:00:00Z", None, True),
        ("1999-12-31T23:59:59Z", None, False),
        ("1900-01-01T00:00:00Z", None, False),
        ("3000-01-01T00:00:00Z", None, False),
        ((NOW + timedelta(hours=23)).isoformat(), None, True),
        ((NOW + timedelta(days=1, seconds=1)).isoformat(), None, False),
        # A device clock in 1970 (or 3000) sends both times from it: the corrected time is fine.
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:05Z", True),
        ("3000-01-01T00:00:00Z", "3000-01-01T00:00:05Z", True),
        (None, None, True),
    ],
)
def test_event_time_window(timestamp: str | None, sent_at: str | None, ok: bool) -> None:
    event = record(timestamp, sent_at)
    if ok:
        check_event_time(event, LIMITS)
        return
    with pytest.raises(ValidationError) as err:
        check_event_time(event, LIMITS)
    assert err.value.reason == "invalid_timestamp"


def test_a_number_past_float_is_an_invalid_field_not_an_overflow() -> None:
    with pytest.raises(ValidationError) as err:
        coerce.as_float(10**400, "properties.price")
    assert err.value.reason == "invalid_field"


@pytest.mark.kafka
def test_deep_batches_are_4xx_with_dead_letters(kafka_settings: KafkaSettings) -> None:
    """The issue's bodies: 990 levels (was a 500) and 10,000 levels (RecursionError in the parser)."""
    good = {"type": "track", "event": "Fine", "anonymousId": "a1", "messageId": "ok"}
    nested = (
        '{"type":"track","event":"Deep","anonymousId":"a2","properties":{"x":' + "[" * 990 + "]" * 990 + "}}"
    )
    body990 = '{"batch":[' + json.dumps(good) + "," + nested + "]}"
    body10k = '{"batch":[{"type":"track","properties":' + "[" * 10000 + "]" * 10000 + "}]}"
    future = {**good, "messageId": "f", "timestamp": "3000-01-01T00:00:00Z"}
    auth = (WRITE_KEY, "")
    headers = {"Content-Type": "application/json"}
    with ThreadedCollector(collector_settings(kafka_settings)) as collector:
        url = f"{collector.url}/v1/batch"
        first = requests.post(url, data=body990, headers=headers, auth=auth)
        second = requests.post(url, data=body10k, headers=headers, auth=auth)
        third = requests.post(url, json={"batch": [future]}, auth=auth)
        assert requests.get(f"{collector.url}/health").status_code == 200
    assert first.status_code == 200
    assert first.json()["accepted"] == 1
    assert [(e["index"], e["code"]) for e in first.json()["errors"]] == [(1, "too_deep")]
    assert second.status_code == 400
    assert second.json()["errors"][0]["code"] == "too_deep"
    assert third.status_code == 400
    assert third.json()["errors"][0]["code"] == "invalid_timestamp"
    topics = Topics.from_settings(kafka_settings)
    letters = read_records(kafka_settings.bootstrap_servers, topics.dead_letters, 3, schema="dead_letter")
    assert sorted(letter["reason"] for letter in letters) == ["invalid_timestamp", "too_deep", "too_deep"]
    payloads = {letter["payload"] for letter in letters if letter["reason"] == "too_deep"}
    assert payloads == {
        b'{"anonymousId":"a2","event":"Deep","properties":{"x":'
        + b"[" * 990
        + b"]" * 990
        + b'},"type":"track"}',
        b'{"properties":' + b"[" * 10000 + b"]" * 10000 + b',"type":"track"}',  # all of it kept
    }


def test_cut_deep_keeps_what_parses_and_gives_back_the_rest() -> None:
    text = b'{"batch":[{"a":"[[{{","b":' + b"[" * 50 + b"]" * 50 + b'},{"c":[1]}]}'
    shallow, cuts = cut_deep(text, 5)
    document = json.loads(shallow)
    assert document["batch"][1] == {"c": [1]}
    assert document["batch"][0]["a"] == "[[{{"  # brackets in strings are text
    with pytest.raises(ValidationError):
        check_shape(document["batch"][0], EventLimits(max_depth=40), cut=True)
    assert (
        dead_letter_payload(document["batch"][0], cuts) == b'{"a":"[[{{","b":' + b"[" * 50 + b"]" * 50 + b"}"
    )
