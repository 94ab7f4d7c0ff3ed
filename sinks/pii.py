"""The sinks' keyed hashing of e-mail, phone and IP: ``pipeline.pii`` (the collector hashes
with the same key first; see that module)."""

from __future__ import annotations

from pipeline.pii import HASHED_SUFFIX, PII_FIELDS, PiiHasher, is_pseudonym

__all__ = ["HASHED_SUFFIX", "PII_FIELDS", "PiiHasher", "is_pseudonym"]
