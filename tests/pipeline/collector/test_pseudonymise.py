"""Every place a client can put an e-mail, phone or IP address, hashed before Kafka."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from pipeline.collector.pseudonymise import Pseudonymiser, snake
from pipeline.collector.segment import map_event
from pipeline.collector.server import ThreadedCollector
from pipeline.pii import PiiHasher, is_pseudonym
from pipeline.settings import CollectorPiiSettings, KafkaSettings
from pipeline.topics import Topics
from tests.pipeline.collector.touchpoint_support import WRITE_KEY, collector_settings, read_records

SECRET = "test-secret"
HASH = PiiHasher(SECRET)
PSEUDO = Pseudonymiser.from_settings(CollectorPiiSettings(), SECRET)
RECEIVED = datetime(2026, 11, 23, 12, tzinfo=UTC)
EMAIL, PHONE, IP = "Ada.Lovelace@Example.com", "+44 20 7946 0000", "203.0.113.9"
# ``hash`` is None only for None: these are there.
H_EMAIL = HASH.hash("email", EMAIL)
H_PHONE = HASH.hash("phone", PHONE)
H_IP = HASH.hash("ip", IP)


def clear_values(record: Any) -> list[str]:
    text = (record if isinstance(record, str) else json.dumps(record, default=str)).lower()
    found = [v for v in (EMAIL.lower(), "ada.lovelace%40example.com", IP, "+44 20 7946") if v in text]
    return found


def pseudonymised(raw: dict[str, Any]) -> dict[str, Any]:
    record = PSEUDO.record(map_event(raw, received_at=RECEIVED, source="s"))
    assert clear_values(record) == []
    return record


def props(record: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in record["properties"].items()}


def test_identify_traits_typed_and_untyped_and_in_context() -> None:
    record = pseudonymised(
        {
            "type": "identify",
            "userId": EMAIL,
            "traits": {"email": EMAIL, "phone": PHONE, "user_email": EMAIL, "phoneNumber": PHONE},
            "context": {
                "ip": IP,
                "traits": {"mobile": PHONE, "contact": {"email": EMAIL}},
                "page": {"url": f"https://shop.example/?email={EMAIL}&phone=%2B44%2020%207946%200000&x=1"},
            },
        }
    )
    traits = record["traits"]
    assert (traits["email"], traits["phone"]) == (H_EMAIL, H_PHONE)
    extra = {k: json.loads(v) for k, v in traits["extra"].items()}
    assert extra == {
        "user_email": H_EMAIL,
        "phoneNumber": H_PHONE,
        "mobile": H_PHONE,
        "contact": {"email": H_EMAIL},
    }
    assert record["user_id"] == H_EMAIL  # the same pseudonym as traits.email: stitching still joins
    assert record["context"]["ip"] == H_IP
    assert record["context"]["page"]["url"] == f"https://shop.example/?email={H_EMAIL}&phone={H_PHONE}&x=1"


def test_track_properties_leftovers_ids_and_urls() -> None:
    record = pseudonymised(
        {
            "type": "track",
            "event": "Newsletter Signup",
            "anonymousId": EMAIL.replace("@", "%40"),
            "messageId": "m-1",
            "properties": {
                "email": EMAIL,
                "deep": {"list": [{"phone": 442079460000}, f"write to {EMAIL}"]},
                "ip_address": IP,
                "url": f"https://shop.example/signup?e={EMAIL.replace('@', '%40')}#top",
                "note": f"call {PHONE} (not 020 7946 0000? ids 2026-11-23, +5 points)",
            },
            "traits": {"e_mail": EMAIL},
            "context": {"ip": IP, "page": {"search": f"?email={EMAIL}&mobile={PHONE}", "referrer": EMAIL}},
            "contact": {"phone": PHONE},
        }
    )
    assert record["anonymous_id"] == H_EMAIL
    values = props(record)
    assert values["email"] == H_EMAIL and values["ip_address"] == H_IP
    assert values["deep"] == {"list": [{"phone": HASH.hash("phone", "442079460000")}, f"write to {H_EMAIL}"]}
    assert values["url"] == f"https://shop.example/signup?e={H_EMAIL}#top"
    assert values["note"] == f"call {H_PHONE} (not 020 7946 0000? ids 2026-11-23, +5 points)"
    assert values["$traits.e_mail"] == H_EMAIL and values["$contact"] == {"phone": H_PHONE}
    assert record["context"]["page"]["search"] == f"?email={H_EMAIL}&mobile={H_PHONE}"
    assert record["context"]["page"]["referrer"] == H_EMAIL


def test_values_without_pii_are_untouched_and_hashing_is_idempotent() -> None:
    raw = {
        "type": "page",
        "anonymousId": "a-1",
        "properties": {"url": "https://shop.example/?q=shoes&page=2", "note": "no address here"},
    }
    record = map_event(raw, received_at=RECEIVED, source="s")
    assert PSEUDO.record(record) == record
    once = pseudonymised({"type": "identify", "userId": "u", "traits": {"email": EMAIL}})
    assert PSEUDO.record(once) == once
    assert is_pseudonym(once["traits"]["email"])


def test_members_named_like_the_json_maps_are_ordinary_members() -> None:
    """Only the record's own ``properties`` and ``traits.extra`` hold JSON text. A property whose
    object has a member "extra" or "properties" was taken for one until 6 December 2026, and the
    valid event refused as ``unmappable_event``."""
    nested = {"extra": {"email": EMAIL, "n": 1, "none": None}, "properties": {"list": [1, None, PHONE]}}
    record = pseudonymised(
        {
            "type": "identify",
            "userId": "u-1",
            "properties": {"order": nested},
            "traits": {"subscription": {"extra": {"seats": 3}}, "properties": {"phone": PHONE}},
        }
    )
    assert props(record)["order"] == {
        "extra": {"email": H_EMAIL, "n": 1, "none": None},
        "properties": {"list": [1, None, H_PHONE]},
    }
    extra = {k: json.loads(v) for k, v in record["traits"]["extra"].items()}
    assert extra == {"subscription": {"extra": {"seats": 3}}, "properties": {"phone": H_PHONE}}


def test_dead_letter_bytes_are_scrubbed_even_when_they_do_not_parse() -> None:
    payload = f'{{"context":{{"ip":"{IP}"}},"traits":{{"phone":"{PHONE}","x":"{EMAIL}"}},"url":"/?mobile=1"'
    scrubbed = PSEUDO.scrub_bytes(payload.encode() + b"\xff")
    assert clear_values(scrubbed.decode("utf-8", "replace")) == []
    assert H_IP.encode() in scrubbed and H_PHONE.encode() in scrubbed and H_EMAIL.encode() in scrubbed
    assert scrubbed.endswith(b"\xff")


def test_key_names_in_any_case() -> None:
    assert [snake(k) for k in ("phoneNumber", "$context.traits.userEmail", "IP", "e-mail")] == [
        "phone_number",
        "user_email",
        "ip",
        "e_mail",
    ]


@pytest.mark.kafka
def test_refused_bodies_and_events_leave_no_clear_pii_in_dead_letters(kafka_settings: KafkaSettings) -> None:
    bad_event: dict[str, Any] = {
        "type": "track",
        "anonymousId": "a",
        "properties": {"email": EMAIL, "phone": PHONE},
    }
    not_json = f'{{"batch":[{{"context":{{"ip":"{IP}"}},"userId":"{EMAIL}"}}'.encode()  # truncated
    auth = (WRITE_KEY, "")
    with ThreadedCollector(collector_settings(kafka_settings)) as collector:
        url = f"{collector.url}/v1/batch"
        first = requests.post(url, json={"batch": [bad_event]}, auth=auth)
        gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        second = requests.post(url, data=gzip.compress(not_json), headers=gzipped, auth=auth)
        secret = collector.server.settings.webhouse.pii_hmac_secret
    assert (first.status_code, second.status_code) == (400, 400)
    assert clear_values(first.text + second.text) == []
    topic = Topics.from_settings(kafka_settings).dead_letters
    letters = read_records(kafka_settings.bootstrap_servers, topic, 2, schema="dead_letter")
    assert sorted(letter["reason"] for letter in letters) == ["invalid_json", "missing_event_name"]
    for letter in letters:
        assert clear_values(letter["payload"].decode() + letter["detail"]) == []
    [body_letter] = [letter for letter in letters if letter["reason"] == "invalid_json"]
    assert body_letter["headers"]["payload_inflated"] == "gzip"
    assert PiiHasher(secret).hash("email", EMAIL).encode() in body_letter["payload"]
