"""Hypothesis strategies for Avro values that the codec tests share (flat_avro, cavro_codec)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# A timestamp-millis value: a long, or an aware datetime (before 1970 too, with microseconds).
TIMES = st.one_of(
    LONGS,
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
    ),
)
