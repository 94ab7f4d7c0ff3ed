"""Keyed hashing of personal identifiers: the collector's before events reach Kafka, the
sinks' before anything lands in a table.

E-mail, phone and IP addresses are replaced by HMAC-SHA256 under
``webhouse.pii_hmac_secret``: the same address always gives the same hash, so
analysts can still join and count by it, but a table leak does not reveal it and,
unlike a bare hash, nobody without the key can confirm a guessed address.
Normalising first (trim, lower-case e-mail, digits-only phone) makes equal
identifiers hash equal however the touchpoint typed them. A pseudonym (64 lower-case
hex digits, ``is_pseudonym``) is never hashed again, so the collector's and the sinks'
hashing compose: a value hashed at the collector lands as that same hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import overload

PII_FIELDS = frozenset({"email", "phone", "ip"})
HASHED_SUFFIX = "_hmac"

_EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_IPV4 = re.compile(rb"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(rb"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_PHONE = re.compile(rb"\+?\d[\d ()./-]{6,}\d")


def is_pseudonym(value: str) -> bool:
    """A value this module produced (an HMAC-SHA256 in hex)."""
    return len(value) == 64 and _PSEUDONYM.fullmatch(value) is not None


class PiiHasher:
    """HMAC-SHA256 of normalised identifiers; hex output."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    @overload
    def hash(self, kind: str, value: str) -> str: ...
    @overload
    def hash(self, kind: str, value: None) -> None: ...
    @overload
    def hash(self, kind: str, value: str | None) -> str | None: ...
    def hash(self, kind: str, value: str | None) -> str | None:
        if value is None or is_pseudonym(value):
            return value
        normal = value.strip()
        if kind == "email":
            normal = normal.lower()
        elif kind == "phone":
            normal = re.sub(r"[^\d+]", "", normal)
        return hmac.new(self._key, f"{kind}:{normal}".encode(), hashlib.sha256).hexdigest()

    def redact_bytes(self, payload: bytes) -> bytes:
        """Replace anything that looks like an e-mail, IP or phone number in raw bytes.

        Dead letters keep the input that failed; it may be malformed JSON or Avro that
        cannot be parsed into fields, so the identifiers are found by pattern instead.
        """

        def sub(kind: str) -> Callable[[re.Match[bytes]], bytes]:
            def repl(match: re.Match[bytes]) -> bytes:
                digest = self.hash(kind, match.group(0).decode("latin-1"))
                return f"<{kind}:{digest[:16] if digest else ''}>".encode()

            return repl

        out = _EMAIL.sub(sub("email"), payload)
        out = _IPV6.sub(sub("ip"), out)
        out = _IPV4.sub(sub("ip"), out)
        return _PHONE.sub(sub("phone"), out)
