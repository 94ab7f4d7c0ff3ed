"""Enrichment: user agent, URL/UTM/referrer, clock skew and geo, as the enriched event carries them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.collector.pseudonymise import Pseudonymiser
from pipeline.errors import SettingsError
from pipeline.serde import SingleObjectSerde
from pipeline.settings import CollectorPiiSettings, WorkerSettings
from processors.enrichment import Enricher, GeoLookup, derive_event_time
from processors.enrichment.useragent import parse_user_agent
from processors.enrichment.web import classify_referrer, split_url

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def event(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": "m-1",
        "type": "page",
        "event": None,
        "channel": "web",
        "anonymous_id": "a-1",
        "user_id": None,
        "timestamp": T0,
        "sent_at": T0,
        "received_at": T0,
        "context": {
            "page": {"url": "https://shop.example/p/mug?color=blue", "referrer": None},
            "user_agent": CHROME_WIN,
            "ip": "81.2.69.160",
        },
    }
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    ("ua", "browser", "os_family", "device_class"),
    [
        (CHROME_WIN, "Chrome", "Windows", "desktop"),
        (IPHONE, "Mobile Safari", "iOS", "mobile"),
        (IPAD, "Mobile Safari", "iOS", "tablet"),
        (ANDROID_TABLET, "Chrome", "Android", "tablet"),
        (ANDROID_PHONE, "Chrome Mobile", "Android", "mobile"),
        ("SmartTV/1.0", None, None, "other"),
    ],
)
def test_user_agent_classes(ua: str, browser: str | None, os_family: str | None, device_class: str) -> None:
    info = parse_user_agent(ua)
    assert (info.browser_family, info.os_family, info.device_class) == (browser, os_family, device_class)
    assert not info.is_bot


@pytest.mark.parametrize(
    ("ua", "name"),
    [
        (GOOGLEBOT, "Googlebot"),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot"),
        ("curl/8.5.0", "curl"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36", "HeadlessChrome"),
    ],
)
def test_bots_are_flagged_with_a_name(ua: str, name: str) -> None:
    info = parse_user_agent(ua)
    assert info.is_bot and info.device_class == "bot" and info.bot_name == name


def test_browser_version_is_the_parsed_dotted_version() -> None:
    assert parse_user_agent(IPHONE).browser_version == "17.2"
    assert parse_user_agent(CHROME_WIN).browser_version == "120.0.0"


def test_url_split_drops_tracking_parameters_and_keeps_utm_apart() -> None:
    url = split_url(
        "https://WWW.Shop.example:8443/p/mug?color=blue&utm_source=news&utm_medium=email"
        "&gclid=abc&fbclid=x&size=L&UTM_campaign=spring"
    )
    assert url.host == "www.shop.example"
    assert url.path == "/p/mug"
    assert url.query == "color=blue&size=L"
    assert url.utm == {"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring"}
    only_tracking = split_url("https://shop.example/?msclkid=1&utm_term=x")
    assert only_tracking.query is None and only_tracking.path == "/"
    assert split_url("http://[::1") == split_url(None)  # malformed: nothing, no error


@pytest.mark.parametrize(
    ("referrer", "page_host", "medium", "expected"),
    [
        (None, "shop.example", None, ("direct", None)),
        ("", "shop.example", None, ("direct", None)),
        (None, "shop.example", "email", ("email", None)),
        ("https://shop.example/cart", "www.shop.example", None, ("internal", "shop.example")),
        ("https://blog.shop.example/x", "shop.example", None, ("internal", "blog.shop.example")),
        ("https://www.google.co.uk/search?q=mug", "shop.example", None, ("search", "www.google.co.uk")),
        ("https://duckduckgo.com/", "shop.example", None, ("search", "duckduckgo.com")),
        ("https://l.facebook.com/l.php?u=x", "shop.example", None, ("social", "l.facebook.com")),
        ("https://t.co/abc", "shop.example", None, ("social", "t.co")),
        ("https://mail.google.com/mail/u/0", "shop.example", None, ("email", "mail.google.com")),
        ("https://outlook.live.com/mail/", "shop.example", None, ("email", "outlook.live.com")),
        ("https://partner.example.org/deals", "shop.example", None, ("other", "partner.example.org")),
    ],
)
def test_referrer_classes(
    referrer: str | None, page_host: str, medium: str | None, expected: tuple[str, str | None]
) -> None:
    internal = frozenset({"shop.example"})
    assert classify_referrer(referrer, page_host, medium, internal) == expected


def test_internal_needs_the_configured_domain_for_a_sibling_host() -> None:
    assert classify_referrer("https://blog.shop.example/", "shop.example")[0] == "other"


def test_clock_skew_is_corrected_from_the_send_delay() -> None:
    # Device clock 2 h ahead; the event was created 30 s before its batch was sent.
    received = T0
    created = T0 + timedelta(hours=2) - timedelta(seconds=30)
    sent = T0 + timedelta(hours=2)
    result = derive_event_time(created, sent, received)
    assert result.event_time == T0 - timedelta(seconds=30)
    assert result.clock_skew_ms == 2 * 3600 * 1000


def test_event_time_falls_back_to_client_then_collector_time() -> None:
    assert derive_event_time(T0, None, T0 + timedelta(minutes=5)).event_time == T0
    assert derive_event_time(T0, None, T0 + timedelta(minutes=5)).clock_skew_ms is None
    assert derive_event_time(None, None, T0).event_time == T0
    # Sent before created (a clock jump): no negative delay.
    assert derive_event_time(T0, T0 - timedelta(seconds=9), T0).event_time == T0


def test_enrich_fills_the_enrichment_record_and_it_encodes() -> None:
    raw = event(
        context={
            "page": {
                "url": "https://shop.example/p/mug?utm_source=news&utm_medium=email&utm_campaign=spring&x=1",
                "referrer": "https://www.google.com/",
            },
            "user_agent": IPHONE,
        },
        user_id="c-9",
    )
    enrichment = Enricher().enrich(raw)
    assert enrichment["event_time"] == T0
    assert enrichment["customer_id"] == "c-9"
    assert (enrichment["device_class"], enrichment["os_family"]) == ("mobile", "iOS")
    assert (enrichment["url_host"], enrichment["url_path"], enrichment["url_query"]) == (
        "shop.example",
        "/p/mug",
        "x=1",
    )
    assert (enrichment["utm_source"], enrichment["utm_medium"], enrichment["utm_campaign"]) == (
        "news",
        "email",
        "spring",
    )
    assert (enrichment["referrer_class"], enrichment["referrer_host"]) == ("search", "www.google.com")
    assert enrichment["geo_country"] is None  # no database configured: empty, no error
    serde = SingleObjectSerde("customer_event")
    decoded = serde.decode(serde.encode({**raw, "enrichment": enrichment}))
    assert decoded["enrichment"]["utm_campaign"] == "spring"
    assert decoded["enrichment"]["clock_skew_ms"] == 0


def test_supplied_campaign_wins_over_the_url() -> None:
    raw = event()
    raw["context"]["page"]["url"] = "https://shop.example/?utm_source=url"
    raw["context"]["campaign"] = {"source": "ctx", "medium": "cpc", "name": "brand"}
    enrichment = Enricher().enrich(raw)
    assert (enrichment["utm_source"], enrichment["utm_medium"], enrichment["utm_campaign"]) == (
        "ctx",
        "cpc",
        "brand",
    )


def test_non_page_events_have_no_referrer_class_and_app_events_are_mobile() -> None:
    raw = event(type="track", event="Application Opened", channel="app", context={"os": {"name": "iOS"}})
    enrichment = Enricher().enrich(raw)
    assert enrichment["referrer_class"] is None
    assert enrichment["device_class"] == "mobile"
    assert enrichment["os_family"] == "iOS"


def _tiny_city_database(path: Path) -> Path:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"])
    writer.insert_network(
        IPSet(["81.2.69.0/24"]),
        {
            "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
            "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
            "city": {"names": {"en": "London"}},
        },
    )
    writer.insert_network(IPSet(["2a02:8100::/32"]), {"country": {"iso_code": "DE"}})
    writer.to_db_file(str(path))
    return path


def test_geo_from_a_maxmind_format_database(tmp_path: Path) -> None:
    database = _tiny_city_database(tmp_path / "city.mmdb")
    enricher = Enricher.from_settings(WorkerSettings(geoip_database=database))
    enrichment = enricher.enrich(event())
    assert (enrichment["geo_country"], enrichment["geo_region"], enrichment["geo_city"]) == (
        "GB",
        "ENG",
        "London",
    )
    geo = GeoLookup(database)
    assert geo.lookup("2a02:8100::7").country == "DE"
    assert geo.lookup("10.1.2.3").country is None  # not in the database
    assert geo.lookup("not-an-ip").country is None
    assert geo.lookup(None).country is None


def test_geo_still_works_once_the_collector_hashed_the_ip(tmp_path: Path) -> None:
    database = _tiny_city_database(tmp_path / "city.mmdb")
    enricher = Enricher.from_settings(WorkerSettings(geoip_database=database))
    hashed = Pseudonymiser.from_settings(CollectorPiiSettings(), "k").record({**event(), "properties": {}})
    assert hashed["context"]["ip"] != "81.2.69.160"
    assert json.loads(hashed["properties"]["$ip_network"]) == "81.2.69.0"
    assert enricher.enrich(hashed)["geo_city"] == "London"


def test_a_configured_but_missing_database_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="geoip_database"):
        GeoLookup(tmp_path / "missing.mmdb")
