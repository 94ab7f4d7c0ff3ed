"""Optional geo lookup from a local MaxMind-format (.mmdb) database.

Only configured deployments pay for it: without ``worker.geoip_database`` every
lookup is empty. A configured file that cannot be opened fails at start (a typo
should not silently turn geo off); an address that is missing, malformed or not
in the database gives empty fields.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from pipeline.errors import SettingsError
from pipeline.immutable import immutable


@immutable
class Geo:
    country: str | None = None
    region: str | None = None
    city: str | None = None


NO_GEO = Geo()


def _name(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    names = node.get("names")
    if isinstance(names, dict) and isinstance(names.get("en"), str):
        return str(names["en"])
    code = node.get("iso_code")
    return str(code) if isinstance(code, str) else None


class GeoLookup:
    """IP -> country (ISO code), region (first subdivision code or name), city (English name)."""

    def __init__(self, database: Path | None) -> None:
        self._reader: Any = None
        if database is not None:
            try:
                self._reader = maxminddb.open_database(str(database))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise SettingsError(f"worker.geoip_database={database}: cannot open: {exc}") from exc
        self._cached = lru_cache(maxsize=50_000)(self._lookup)

    @property
    def enabled(self) -> bool:
        return self._reader is not None

    def lookup(self, ip: str | None) -> Geo:
        if self._reader is None or not ip:
            return NO_GEO
        return self._cached(ip)

    def _lookup(self, ip: str | None) -> Geo:
        if not ip:
            return NO_GEO
        try:
            address = ipaddress.ip_address(ip.strip())
            record = self._reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError):
            return NO_GEO
        if not isinstance(record, dict):
            return NO_GEO
        country = record.get("country") or record.get("registered_country")
        subdivisions = record.get("subdivisions")
        region = None
        if isinstance(subdivisions, list) and subdivisions:
            first = subdivisions[0]
            region = first.get("iso_code") if isinstance(first, dict) else None
            region = region or _name(first)
        return Geo(
            country=country.get("iso_code") if isinstance(country, dict) else None,
            region=region,
            city=_name(record.get("city")),
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
