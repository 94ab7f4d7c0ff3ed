"""``fast_json.loads`` reads what ``json.dumps`` wrote, the same values, or fails the same way."""

from __future__ import annotations

import json
import math
from datetime import date
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


# -- writing ---------------------------------------------------------------------------------

_ANY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=2)
    ),
    max_leaves=20,
)


def _meaning(text: bytes | str) -> str:
    """A text's value, spelled one way (NaN is not equal to itself, so values are compared so)."""
    return json.dumps(json.loads(text), sort_keys=True)


@given(_ANY_VALUES)
def test_compact_means_what_the_standard_library_writes(value: Any) -> None:
    """Integers of any size, NaN and the infinities, lone surrogates, integer keys: the text reads
    back as the standard library's does, and holds no raw newline (held inputs end their head
    with one)."""
    text = fast_json.compact(value)
    assert _meaning(text) == _meaning(json.dumps(value, separators=(",", ":")))
    assert b"\n" not in text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_compact_keeps_what_orjson_would_write_as_null(value: float) -> None:
    assert (
        fast_json.compact({"revenue": value, "none": None})
        == json.dumps({"revenue": value, "none": None}, separators=(",", ":")).encode()
    )


@pytest.mark.parametrize("value", [object(), {(1, 2): "a tuple key"}, {"when": date(2026, 1, 1)}])
def test_compact_refuses_what_the_standard_library_refuses(value: Any) -> None:
    with pytest.raises(TypeError):
        fast_json.compact(value)
