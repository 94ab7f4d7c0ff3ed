"""What a state keeps of an event's or a visit's id against redeliveries: a short fingerprint.

The worker's devices and the triggers' customers each remember their latest input ids, to drop a
redelivered input; kept whole, those ids were most of both records (docs/performance.md, "The
triggers' state over replay cycles" and "The worker's duplicate memory"). 72 bits of the id's
BLAKE2b digest, in 12 characters, a third of a message id's length. A state remembering ``n`` ids
takes a new input for one of them with a chance of about ``n`` in 2**72 (300 ids: 6e-20), and
then drops it as a redelivery.
"""

from __future__ import annotations

import base64
import hashlib


def id_fingerprint(identifier: str) -> str:
    """72 bits of ``identifier``'s BLAKE2b digest, URL-safe base64 (12 characters)."""
    digest = hashlib.blake2b(identifier.encode("utf-8", "surrogatepass"), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")
