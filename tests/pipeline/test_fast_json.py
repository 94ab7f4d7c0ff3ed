"""``fast_json.loads`` reads what ``json.dumps`` wrote, the same values, or fails the same way."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import fast_json

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_VALUES = st.recursive(
    st.none() | st.booleans() | _INT64 | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(_VALUES, st.booleans())
def test_reads_the_values_json_dumps_wrote(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"), sort_keys=True)
    assert fast_json.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ['{"x":NaN}', "[Infinity,-Infinity]", '"\\ud800"', "1e400"])
def test_what_only_the_standard_library_reads_still_reads(text: str) -> None:
    got, expected = fast_json.loads(text.encode()), json.loads(text)
    if isinstance(expected, dict):
        assert math.isnan(got["x"])
    else:
        assert got == expected


@pytest.mark.parametrize("text", [b"", b"{", b"[1,]", b"\xff"])
def test_what_neither_reads_raises_the_standard_librarys_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        fast_json.loads(text)
