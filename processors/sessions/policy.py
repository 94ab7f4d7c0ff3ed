"""The session policy: every rule that cuts a device's clicks into visits, as one small object.

Times inside the session logic are integer milliseconds since the epoch (Avro ``timestamp-millis``),
so comparisons are exact and cheap; the policy converts its durations once.

Rules (each event is compared with the visit it would extend, events ordered by (time, event id)):

- inactivity: an event more than ``gap`` after the previous one starts a new visit;
- max duration: an event ``max_duration`` or more after the visit's first event starts a new visit
  (PostHog caps visits at 24 hours);
- midnight (optional): an event on another local date, in ``timezone``, starts a new visit;
- campaign change (optional, as Google Analytics did): an event whose campaign (utm source, medium,
  campaign) differs from the visit's starts a new visit; an event without a campaign (direct or
  internal navigation) never does.

A visit's closing rule is the first time boundary it meets (inactivity, max duration or midnight,
in that order on a tie), or ``campaign_change`` when the next event falls inside every time
boundary but brings another campaign, or ``idle_sweep`` when an end of input closes it before any
boundary.
"""

from __future__ import annotations

from dataclasses import field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import SettingsError
from pipeline.immutable import immutable

if TYPE_CHECKING:
    from pipeline.settings import SessionPolicySettings

MS_PER_S = 1000


class CloseRule(StrEnum):
    """Why a visit ended: the symbols of ``SessionCloseRule`` in ``schemas/session.avsc``."""

    INACTIVITY = "inactivity"
    MAX_DURATION = "max_duration"
    MIDNIGHT = "midnight"
    CAMPAIGN_CHANGE = "campaign_change"
    IDLE_SWEEP = "idle_sweep"


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of a tz-aware datetime (naive ones are refused upstream)."""
    return (moment - _EPOCH) // _ONE_MS


def from_ms(ms: int) -> datetime:
    """Tz-aware UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


@immutable
class SessionPolicy:
    """How visits are cut; durations in milliseconds (build it with ``from_settings``)."""

    gap_ms: int = 30 * 60 * MS_PER_S
    max_duration_ms: int = 24 * 3600 * MS_PER_S
    allowed_lateness_ms: int = 5 * 60 * MS_PER_S
    split_at_midnight: bool = False
    timezone: str = "UTC"
    split_on_campaign_change: bool = True
    dedup_memory: int = 64
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.gap_ms <= 0 or self.max_duration_ms <= 0:
            raise SettingsError("session gap and max duration must be positive")
        if self.allowed_lateness_ms < 0 or self.dedup_memory < 0:
            raise SettingsError("session allowed lateness and dedup memory must not be negative")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(f"unknown session time zone {self.timezone!r}") from exc
        object.__setattr__(self, "_zone", zone)

    @classmethod
    def from_settings(cls, settings: SessionPolicySettings) -> SessionPolicy:
        return cls(
            gap_ms=settings.inactivity_gap_s * MS_PER_S,
            max_duration_ms=settings.max_duration_s * MS_PER_S,
            allowed_lateness_ms=settings.allowed_lateness_s * MS_PER_S,
            split_at_midnight=settings.split_at_midnight,
            timezone=settings.midnight_timezone,
            split_on_campaign_change=settings.split_on_campaign_change,
            dedup_memory=settings.dedup_memory,
        )

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def local_date(self, ms: int) -> date:
        """The calendar date of an instant in the policy's time zone."""
        return from_ms(ms).astimezone(self._zone).date()

    def next_midnight_ms(self, ms: int) -> int:
        """First instant of the local day after the one holding ``ms``.

        Where a DST jump skips midnight, zoneinfo resolves the missing local time with the
        offset before the jump, which lands on the jump itself: still the day's first instant.
        """
        next_day = self.local_date(ms) + timedelta(days=1)
        return to_ms(datetime.combine(next_day, time(0), tzinfo=self._zone))

    def describe(self) -> str:
        """A few lines for ``webhouse worker --help``: the rules in force."""

        def span(ms: int) -> str:
            seconds = ms // MS_PER_S
            if seconds % 3600 == 0:
                return f"{seconds // 3600} h"
            if seconds % 60 == 0:
                return f"{seconds // 60} min"
            return f"{seconds} s"

        lines = [
            "Sessions are cut per device (anonymous id, else user id) in event time:",
            f"  - a new visit after {span(self.gap_ms)} without events (inactivity gap);",
            f"  - no visit longer than {span(self.max_duration_ms)} (max duration);",
            (
                f"  - a new visit at midnight in {self.timezone};"
                if self.split_at_midnight
                else "  - no split at midnight;"
            ),
            (
                "  - a new visit when the campaign (utm source/medium/campaign) changes mid-visit;"
                " direct traffic does not end a campaign visit;"
                if self.split_on_campaign_change
                else "  - no split on campaign change;"
            ),
            f"  - events up to {span(self.allowed_lateness_ms)} out of order are placed where they"
            " belong; later ones are kept, flagged late, and left out of sessions;",
            "  - a visit closes when the partition watermark (largest event time minus the allowed"
            " lateness) passes its end; a periodic sweep closes visits on quiet partitions.",
        ]
        return "\n".join(lines)
