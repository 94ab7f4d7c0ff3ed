"""E-mail endpoints of the collector, end to end: HTTP in, Avro records out of the real broker."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.collector import email_links as el
from pipeline.collector import mailgun
from pipeline.collector.email_tracking import MAILGUN_PATH, PIXEL
from pipeline.collector.server import ThreadedCollector
from pipeline.settings import CollectorEmailSettings, KafkaSettings
from pipeline.topics import Topics
from tests.pipeline.collector.touchpoint_support import collector_settings, read_records

pytestmark = pytest.mark.kafka

SECRET = "link-secret-for-tests"
MAILGUN_KEY = "mailgun-signing-key-for-tests"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(_NoRedirect)


def http(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": "MailClient/1.0"})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def collector(kafka_settings: KafkaSettings) -> Iterator[ThreadedCollector]:
    email = CollectorEmailSettings(
        public_base_url="http://unused.example", link_secrets=[SECRET], mailgun_signing_key=MAILGUN_KEY
    )
    with ThreadedCollector(collector_settings(kafka_settings, email=email)) as running:
        yield running


def test_open_and_click_produce_email_events_and_forgeries_produce_nothing(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    base = collector.url
    target = "https://shop.example/sale?utm_source=newsletter&utm_medium=email"
    html = el.rewrite_html(
        f'<body><a href="{target}">Sale</a></body>', base, el.EmailLink("cmp-1", "s-1", "cust-1"), SECRET
    )
    click = html.split('href="')[1].split('"')[0]
    pixel = html.split('<img src="')[1].split('"')[0]

    # Forgeries first: a foreign key, a swapped target, an open token used as a click.
    forged_open = el.open_url(base, el.EmailLink("cmp-1", "s-1", "victim"), "guessed-key")
    status, _, _ = http("GET", forged_open)
    assert status == 403
    evil = el.sign(el.EmailLink("cmp-1", "s-1", "cust-1", "https://evil.example/"), "guessed-key")
    good_mac = click.rsplit(".", 1)[1]
    status, headers, _ = http("GET", f"{base}/e/c/{evil.split('.')[0]}.{good_mac}")
    assert status == 403 and "Location" not in headers
    open_token = pixel.removeprefix(base + el.OPEN_PATH).removesuffix(el.PIXEL_SUFFIX)
    assert http("GET", f"{base}{el.CLICK_PATH}{open_token}")[0] == 403

    status, headers, body = http("GET", pixel)
    assert status == 200 and body == PIXEL
    assert headers["Content-Type"] == "image/gif" and "no-store" in headers["Cache-Control"]
    status, headers, _ = http("GET", click)
    assert status == 302 and headers["Location"] == target

    records = read_records(
        kafka_settings.bootstrap_servers, Topics.from_settings(kafka_settings).raw_events, 2
    )
    assert sorted(r["event"] for r in records) == ["Email Link Clicked", "Email Opened"]
    for record in records:
        assert record["channel"] == "email"
        assert record["type"] == "track"
        assert record["user_id"] == "cust-1"
        assert record["source"] == "email-tracking"
        assert record["context"]["user_agent"] == "MailClient/1.0"
        assert record["email"]["campaign_id"] == "cmp-1"
        assert record["email"]["send_id"] == "s-1"
    clicked = next(r for r in records if r["event"] == "Email Link Clicked")
    assert clicked["email"]["link_url"] == target


def mailgun_body(kind: str, token: str, key: str = MAILGUN_KEY, **extra: Any) -> dict[str, Any]:
    ts = str(int(time.time()))
    data = {
        "event": kind,
        "id": f"evt-{kind}-{token}",
        "timestamp": time.time(),
        "recipient": "ann@example.com",
        "message": {"headers": {"message-id": "m-1@mg.shop.example", "subject": "Winter sale"}},
        "user-variables": {"customer_id": "cust-1", "campaign_id": "cmp-1", "send_id": "s-1"},
        **extra,
    }
    return {
        "signature": {"timestamp": ts, "token": token, "signature": mailgun.signature_of(key, ts, token)},
        "event-data": data,
    }


MAILGUN_SENT = [
    ("delivered", {}),
    ("failed", {"severity": "permanent", "reason": "bounce"}),
    ("complained", {}),
    ("unsubscribed", {}),
    ("opened", {}),
    ("clicked", {"url": "https://shop.example/sale"}),
]


def test_mailgun_webhook_maps_events_and_refuses_bad_signatures(
    collector: ThreadedCollector, kafka_settings: KafkaSettings
) -> None:
    url = collector.url + MAILGUN_PATH
    assert http("POST", url, mailgun_body("delivered", "tok-forged", key="not-the-key"))[0] == 401
    unsigned = mailgun_body("complained", "tok-x")
    del unsigned["signature"]
    assert http("POST", url, unsigned)[0] == 401

    for i, (kind, extra) in enumerate(MAILGUN_SENT):
        status, _, body = http("POST", url, mailgun_body(kind, f"tok-{i}", **extra))
        assert status == 200, body
    # Mailgun retrying the same request: acknowledged, not produced again.
    retry = mailgun_body("delivered", "tok-retry")
    assert http("POST", url, retry)[0] == 200
    assert json.loads(http("POST", url, retry)[2])["status"] == "duplicate"
    # The same signature on another body: a forgery.
    forged = mailgun_body("unsubscribed", "tok-retry")
    forged["signature"] = retry["signature"]
    assert http("POST", url, forged)[0] == 401
    assert json.loads(http("POST", url, mailgun_body("stored", "tok-stored"))[2])["status"] == "ignored"

    records = read_records(
        kafka_settings.bootstrap_servers,
        Topics.from_settings(kafka_settings).raw_events,
        len(MAILGUN_SENT) + 1,
    )
    _check_mailgun_records(records)


def _check_mailgun_records(records: list[dict[str, Any]]) -> None:
    """Each kind sent once as its e-mail event (the retried delivery once more), with the campaign."""
    by_event: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_event.setdefault(record["event"], []).append(record)
    assert sorted(by_event) == sorted(
        [
            "Email Delivered",
            "Email Bounced",
            "Email Marked as Spam",
            "Unsubscribed",
            "Email Opened",
            "Email Link Clicked",
        ]
    )
    assert len(by_event["Email Delivered"]) == 2  # tok-1 and the retried tok-retry, once
    assert len(records) == len(MAILGUN_SENT) + 1
    for record in records:
        assert record["channel"] == "email"
        assert record["user_id"] == "cust-1"
        assert record["source"] == "mailgun"
        assert record["email"]["provider"] == "mailgun"
        assert record["email"]["campaign_id"] == "cmp-1"
        assert record["email"]["email_subject"] == "Winter sale"
    bounce = by_event["Email Bounced"][0]["email"]
    assert (bounce["bounce_type"], bounce["reason"]) == ("hard", "bounce")
    assert by_event["Email Link Clicked"][0]["email"]["link_url"] == "https://shop.example/sale"
