"""E-mail, phone and IP addresses keyed-hashed before an event reaches Kafka.

The collector is the one place every event passes before any topic, table or worker state
holds it, so the raw topic and everything downstream only ever see pseudonyms
(``pipeline.pii``: HMAC-SHA256 under ``webhouse.pii_hmac_secret``, the sinks' key). What is
hashed, in every string of the record (ids, context, traits, properties, leftovers):

- by key name: a value under a key of ``collector.pii.email_keys`` / ``phone_keys`` /
  ``ip_keys`` (compared in snake case: ``phoneNumber`` is ``phone_number``), at any depth,
  numbers too (``"phone": 5551234``); the typed ``context.ip``, ``traits.email`` and
  ``traits.phone`` are such keys;
- by value: any e-mail address, also percent-encoded (``ada%40example.com``), inside any
  string, ids included, so a user id that is an address becomes the address's pseudonym;
  phone numbers in international form (``+44 20 7946 0000``) inside any string;
- in URLs and query strings: the value of a query parameter whose name is such a key
  (``?email=...&phone=...``).

The hash of an address is the same wherever it appears (normalised first: trimmed,
lower-cased e-mail, digits-only phone), so a user id that was an e-mail address is the same
pseudonym as that customer's ``traits.email`` and stitching by user id works unchanged.
Geo: before ``context.ip`` is hashed, its network (IPv4 /24, IPv6 /48) is kept as
``$ip_network`` for the enrichment's geo lookup (``collector.pii.ip_network_for_geo``, and
only when ``worker.geoip_database`` is set).

Dead letters keep the refused bytes; ``scrub_bytes`` applies the key and value rules to
them as text (they may not parse), so the dead-letter topic holds no clear address either.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from pipeline.pii import PiiHasher, is_pseudonym
from pipeline.settings import CollectorPiiSettings

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A phone number in international form (+, then 8 or more digits and separators) in free text;
# national forms ("020 7946 0000") look like too many other numbers and are found by key only.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d[\d ()./-]{6,}\d")
# name=value after ?, &, ; or #; a value runs to the next separator (spaces included: a
# search box's "?phone=+44 20 7946 0000" is not URL-encoded).
_QUERY_PAIR = re.compile(r"(^|[?&;#])([^?&=#;\s\"\\]+)=([^&#;\r\n\t\"\\]*)")
_JSON_MEMBER = re.compile(r'"([^"\\]{1,64})"(\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*)')
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
IP_NETWORK_KEY = "$ip_network"
# Where customer_event holds Avro string maps whose values are JSON text: the top-level
# ``properties`` and ``traits.extra`` (True: a map here; a dict: the sub-record's own maps). By
# place, not by key name: a key "extra" inside a property's JSON is an ordinary member.
_JSON_MAPS: dict[str, Any] = {"properties": True, "traits": {"extra": True}}


def snake(key: str) -> str:
    """``$context.traits.phoneNumber`` -> ``phone_number``: the last path part, snake case."""
    last = key.rsplit(".", 1)[-1].lstrip("$")
    return _CAMEL.sub("_", last).lower().replace("-", "_").replace(" ", "_")


class Pseudonymiser:
    """Replaces e-mail, phone and IP values in a customer_event record (see the module doc)."""

    def __init__(
        self,
        hasher: PiiHasher,
        email_keys: Iterable[str],
        phone_keys: Iterable[str],
        ip_keys: Iterable[str],
        ip_network_for_geo: bool = True,
    ) -> None:
        self.hasher = hasher
        self.kinds: dict[str, str] = {}
        for kind, keys in (("email", email_keys), ("phone", phone_keys), ("ip", ip_keys)):
            self.kinds.update({snake(k): kind for k in keys})
        self.ip_network_for_geo = ip_network_for_geo
        self._kind_memo: dict[str, str | None] = {}

    @classmethod
    def from_settings(cls, pii: CollectorPiiSettings, secret: str) -> Pseudonymiser:
        return cls(PiiHasher(secret), pii.email_keys, pii.phone_keys, pii.ip_keys, pii.ip_network_for_geo)

    def kind_of(self, key: str | None) -> str | None:
        if not key:
            return None
        try:
            return self._kind_memo[key]
        except KeyError:
            if len(self._kind_memo) > 50_000:  # keys are a small vocabulary; bound it anyway
                self._kind_memo.clear()
            kind = self._kind_memo[key] = self.kinds.get(snake(key))
            return kind

    # -- records -----------------------------------------------------------------------

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with every e-mail, phone and IP value hashed (a new dict)."""
        network = self._ip_network((record.get("context") or {}).get("ip"))
        out = self._members(record, _JSON_MAPS)
        if network is not None:
            out["properties"][IP_NETWORK_KEY] = json.dumps(network)
        return out

    def _members(self, data: dict[str, Any], maps: dict[str, Any] | None = None) -> dict[str, Any]:
        """An object's members, each pseudonymised under its own key. The common case, a string
        with no sign of PII under a key of no kind, is decided here without a call: a record has
        dozens of members and a collector maps every event."""
        out: dict[str, Any] = {}
        memo = self._kind_memo
        for key, value in data.items():
            if value is None:
                out[key] = None
            elif type(value) is str:
                kind = memo[key] if key in memo else self.kind_of(key)
                if kind is not None:
                    out[key] = self._hash(kind, value)
                elif "@" in value or "%40" in value or "=" in value or "+" in value:
                    out[key] = self.text(value)
                else:
                    out[key] = value
            elif maps is not None and key in maps:
                inner = maps[key]
                out[key] = self._json_map(value) if inner is True else self._members(value, inner)
            else:
                out[key] = self._walk(value, key)
        return out

    def _walk(self, value: Any, key: str | None) -> Any:
        if isinstance(value, str):
            kind = self.kind_of(key)
            return self.text(value) if kind is None else self._hash(kind, value)
        if isinstance(value, dict):
            return self._members(value)
        if isinstance(value, list):
            return [self._walk(v, key) for v in value]
        return self.scalar(value, key)

    def _json_map(self, values: dict[str, str]) -> dict[str, str]:
        return {k: self._json_text(v, k) for k, v in values.items()}

    def _json_text(self, text: str, key: str) -> str:
        """A value of a string map holding JSON: decoded, pseudonymised, encoded again."""
        if self.kind_of(key) is None and text[:1] not in "{[" and not _may_hold_pii(text):
            return text
        return json.dumps(
            self._walk(json.loads(text), key), ensure_ascii=False, separators=(",", ":"), sort_keys=True
        )

    def scalar(self, value: Any, key: str | None) -> Any:
        """One JSON value that is not a container, under ``key``."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self._walk(value, key)
        kind = self.kind_of(key)
        if kind is not None and isinstance(value, int | float):
            return self._hash(kind, json.dumps(value))  # "phone": 5551234
        return value

    def _hash(self, kind: str, text: str) -> str:
        return self.hasher.hash(kind, text) or text if text.strip() else text

    def text(self, value: str) -> str:
        """E-mail addresses and PII query parameters inside free text and URLs."""
        if not _may_hold_pii(value):
            return value
        if "=" in value:
            value = _QUERY_PAIR.sub(self._pair, value)
        value = _EMAIL.sub(lambda m: self.hasher.hash("email", unquote(m.group(0))) or "", value)
        if "+" in value:
            value = _PHONE_INTL.sub(lambda m: self.hasher.hash("phone", m.group(0)) or "", value)
        return value

    def _pair(self, match: re.Match[str]) -> str:
        lead, name, raw_value = match.groups()
        value = unquote(raw_value)  # not unquote_plus: "+44" in a query is a phone's plus
        kind = self.kind_of(unquote(name))
        if kind is None and _EMAIL.fullmatch(value):
            kind = "email"
        if kind is None or not value or is_pseudonym(value):
            return match.group(0)
        return f"{lead}{name}={self.hasher.hash(kind, value)}"

    def _ip_network(self, ip: Any) -> str | None:
        if not self.ip_network_for_geo or not isinstance(ip, str):
            return None
        return ip_network(ip.strip())

    # -- dead letters ------------------------------------------------------------------

    def scrub_bytes(self, payload: bytes) -> bytes:
        """The same rules on bytes that may not parse: JSON members by key, then free text."""
        text = payload.decode("utf-8", "surrogateescape")
        text = self.text(_JSON_MEMBER.sub(self._member, text))
        return text.encode("utf-8", "surrogateescape")

    def _member(self, match: re.Match[str]) -> str:
        key, colon, raw_value = match.groups()
        kind = self.kind_of(key)
        if kind is None:
            return match.group(0)
        try:
            value = json.loads(raw_value)
        except ValueError:
            return match.group(0)
        hashed = self.scalar(value, key)
        return f'"{key}"{colon}{json.dumps(hashed)}'


@lru_cache(maxsize=65536)
def ip_network(ip: str) -> str | None:
    """The address's /24 (IPv4) or /48 (IPv6) network address; None if it is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def _may_hold_pii(text: str) -> bool:
    return "@" in text or "%40" in text or "=" in text or "+" in text
