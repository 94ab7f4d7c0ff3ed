"""Held inputs without their bodies (``HeldInputs.slim``) come out in the same order, and their
bodies are read back from the ``trigger-pending`` store."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.errors import ProcessingError
from triggers.hold import Held, HeldInputs, envelope_of, held_of


def _inputs(n: int, seed: int) -> list[Held]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):  # repeats of one input (a retry) carry the same body, as the route sends them
        key = f"c-{rng.randrange(5)}"
        body = {"time": rng.randrange(10), "message_id": f"m-{rng.randrange(n)}", "anonymous_id": None}
        envelope = json.dumps({"kind": "event", "body": body, "key": key}).encode()
        out.append(held_of(key.encode(), envelope, "event", body, 0))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_slimmed_inputs_come_out_in_the_same_order_with_their_bodies(seed: int) -> None:
    inputs = _inputs(60, seed)
    full, slim = HeldInputs(), HeldInputs()
    store: dict[bytes, bytes] = {}
    for i, held in enumerate(inputs):
        full.add(0, held)
        slim.add(0, held)
        store[held.store_key(0)] = held.to_bytes()
        if i % 7 == 6:
            assert slim.slim(keep=3) > 0
    expected = [(h.at, h.rank, h.key, h.ident, h.envelope) for h in full.release(0, False, 100)]
    got = [(h.at, h.rank, h.key, h.ident, envelope_of(h, 0, store.get)) for h in slim.release(0, False, 100)]
    assert got == expected


def test_nothing_is_dropped_while_few_are_held() -> None:
    """Counted are the inputs held now, not all that were ever added."""
    held = HeldInputs()
    for round_ in range(3):
        for h in _inputs(3, round_):
            held.add(0, h)
        assert held.slim(keep=3) == 0
        assert not any(h.slimmed for h in held.release(0, False, 100))


def test_a_slimmed_input_missing_from_the_store_is_an_error() -> None:
    slimmed = _inputs(1, 0)[0].slim()
    with pytest.raises(ProcessingError, match="not stored"):
        envelope_of(slimmed, 0, {}.get)


def test_a_stored_input_reads_back_whole_in_either_format() -> None:
    """The store's values since 3 December 2026 (a header line, then the envelope as it came),
    and those written before (one JSON array) that a changelog may still hold."""
    held = _inputs(1, 0)[0]
    body = [held.at, held.rank, held.key.decode(), held.ident, held.device, held.envelope.decode()]
    earlier = json.dumps(body, separators=(",", ":")).encode()
    assert held.to_bytes().endswith(b"\n" + held.envelope)
    assert Held.from_bytes(held.to_bytes()) == held
    assert Held.from_bytes(earlier) == held
    assert Held.from_bytes(earlier).envelope == held.envelope
