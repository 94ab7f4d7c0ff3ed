"""Enrichment: what can be said about one event from the event alone.

``Enricher.enrich(event)`` returns the ``enrichment`` sub-record of
schemas/customer_event.avsc: event time (clock skew corrected, see ``clock``),
user agent (``useragent``), page URL, UTM campaign and referrer (``web``) and
optional geo (``geo``). Identity (customer id) and session fields are filled
later by ``processors.identity`` and the sessionizer, which need state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.collector.pseudonymise import IP_NETWORK_KEY
from pipeline.pii import is_pseudonym
from pipeline.settings import WorkerSettings
from processors.enrichment.clock import EventTime, derive_event_time
from processors.enrichment.geo import Geo, GeoLookup
from processors.enrichment.useragent import UserAgentInfo, UserAgentParser, parse_user_agent
from processors.enrichment.web import UTM_KEYS, classify_referrer, split_url

__all__ = ["Enricher", "EventTime", "Geo", "GeoLookup", "UserAgentInfo", "derive_event_time"]

# Segment's context.campaign field -> our utm_* name.
_CAMPAIGN_FIELDS = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign",
                    "term": "utm_term", "content": "utm_content"}  # fmt: skip


def _campaign(context: Mapping[str, Any], url_utm: Mapping[str, str]) -> dict[str, str | None]:
    """UTM values: context.campaign when the client supplied one, else the page URL's utm_*."""
    supplied = context.get("campaign") or {}
    values = {utm: supplied.get(field) or None for field, utm in _CAMPAIGN_FIELDS.items()}
    if any(values.values()):
        return values
    return {key: url_utm.get(key) for key in UTM_KEYS}


def geo_address(event: Mapping[str, Any]) -> str | None:
    """The address to look up: context.ip, or once the collector hashed it, the network it
    kept for geo (``$ip_network``, see pipeline/collector/pseudonymise.py)."""
    ip = (event.get("context") or {}).get("ip")
    if isinstance(ip, str) and not is_pseudonym(ip):
        return ip
    network = (event.get("properties") or {}).get(IP_NETWORK_KEY)
    return str(json.loads(network)) if network else None


class Enricher:
    """Pure per-event enrichment; holds only read-only lookups (geo database, host lists)."""

    def __init__(
        self,
        internal_domains: Iterable[str] = (),
        geo: GeoLookup | None = None,
        agents: UserAgentParser = parse_user_agent,
    ) -> None:
        self.internal_domains = frozenset(d.lower().lstrip(".") for d in internal_domains)
        self.geo = geo or GeoLookup(None)
        self.agents = agents

    @classmethod
    def from_settings(cls, worker: WorkerSettings) -> Enricher:
        agents = UserAgentParser(worker.user_agent_cache_size)
        return cls(worker.internal_domains, GeoLookup(worker.geoip_database), agents)

    def enrich(self, event: Mapping[str, Any]) -> dict[str, Any]:
        context: Mapping[str, Any] = event.get("context") or {}
        page: Mapping[str, Any] = context.get("page") or {}
        when = derive_event_time(event.get("timestamp"), event.get("sent_at"), event["received_at"])
        agent = self.agents(context.get("user_agent"))
        url = split_url(page.get("url"))
        campaign = _campaign(context, url.utm)
        if page:
            referrer_class, referrer_host = classify_referrer(
                page.get("referrer"), url.host, campaign["utm_medium"], self.internal_domains
            )
        else:
            referrer_class, referrer_host = None, None
        device_class = agent.device_class
        if not context.get("user_agent") and event.get("channel") == "app":
            device_class = "mobile"  # app events come from phones and tablets; no UA to tell which
        geo = self.geo.lookup(geo_address(event))
        return {
            "event_time": when.event_time,
            "customer_id": event.get("user_id"),
            "session_id": None,
            "is_bot": agent.is_bot,
            "bot_name": agent.bot_name,
            "is_late": False,
            "browser_family": agent.browser_family,
            "browser_version": agent.browser_version,
            "os_family": agent.os_family or (context.get("os") or {}).get("name"),
            "os_version": agent.os_version or (context.get("os") or {}).get("version"),
            "device_class": device_class,
            "referrer_class": referrer_class,
            "referrer_host": referrer_host,
            "url_host": url.host,
            "url_path": url.path or page.get("path"),
            "url_query": url.query,
            **campaign,
            "geo_country": geo.country,
            "geo_region": geo.region,
            "geo_city": geo.city,
            "clock_skew_ms": when.clock_skew_ms,
            "session_key": None,  # the worker's, once it knows the event joins a visit
        }
