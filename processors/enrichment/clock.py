"""Event time from three clocks, the way Snowplow derives its timestamp.

A device clock can be hours off, but the *delay* it measures between creating an
event (``timestamp``) and sending its batch (``sent_at``) is right, because both
come from the same clock. So the event happened that long before the collector
received it: ``event_time = received_at - (sent_at - timestamp)``. The skew
(``sent_at - received_at``, positive when the device clock runs ahead) is kept so
bad clocks can be found. Without ``sent_at`` the client time is taken as is, and
without any client time the collector's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pipeline.immutable import immutable


@immutable
class EventTime:
    event_time: datetime
    clock_skew_ms: int | None  # None when the skew cannot be measured


def derive_event_time(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> EventTime:
    if timestamp is not None and sent_at is not None:
        delay = sent_at - timestamp
        if delay < timedelta(0):
            # Sent before it was created: a clock jump on the device. The delay is
            # meaningless; trust the collector's clock rather than a negative delay.
            delay = timedelta(0)
        skew_ms = (sent_at - received_at) // timedelta(milliseconds=1)
        return EventTime(received_at - delay, skew_ms)
    if timestamp is not None:
        return EventTime(timestamp, None)
    return EventTime(received_at, None)
