"""A report's date range (``--since``/``--until``): every table cut to it before any analysis runs.

Filtering the tables, not each report, gives every view and macro the same range at once:
the funnel, RFM (recency as of the range's end), cohorts, campaigns and the HTML report.
``since`` is inclusive, ``until`` exclusive; a bare date is midnight UTC. Each table is cut on
its time column and on its date partition (so files outside the range are not read). The
identity map is never cut (a link holds for all time); profiles are cut at ``until`` only
(the state as of the range's end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.errors import SettingsError
from sinks.snapshot import quote_ident, quote_literal

# table -> (time column, UTC-day partition column)
TIME_COLUMNS = {
    "events": ("event_time", "event_date"),
    "orders": ("event_time", "order_date"),
    "email_interactions": ("event_time", "event_date"),
    "sessions": ("start", "session_date"),
    "dead_letters": ("failed_at", "failed_date"),
    "alerts": ("time", "alert_date"),
    "profiles_history": ("updated_at", "profile_date"),
}
UNTIL_ONLY = {"profiles_history"}


def parse_time(text: str) -> datetime:
    """An ISO date or date-time; naive means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SettingsError(f"not a date or ISO date-time: {text!r} (e.g. 2026-03-01)") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> Window:
        window = cls(parse_time(since) if since else None, parse_time(until) if until else None)
        if window.since and window.until and window.since >= window.until:
            raise SettingsError(f"--since {since} is not before --until {until}")
        return window

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None

    def where(self, table: str, columns: set[str]) -> str | None:
        """The SQL condition cutting ``table`` to the range (None: not cut)."""
        if table not in TIME_COLUMNS or not self:
            return None
        ts, day = TIME_COLUMNS[table]
        conds = []
        if self.since is not None and table not in UNTIL_ONLY:
            conds.append(f"{quote_ident(ts)} >= {_ts(self.since)}")
            if day in columns:
                conds.append(
                    f"{quote_ident(day)} >= {quote_literal(f'{self.since.astimezone(UTC):%Y-%m-%d}')}"
                )
        if self.until is not None:
            conds.append(f"{quote_ident(ts)} < {_ts(self.until)}")
            last_day = (self.until - timedelta(microseconds=1)).astimezone(UTC)
            if day in columns:
                conds.append(f"{quote_ident(day)} <= {quote_literal(f'{last_day:%Y-%m-%d}')}")
        return " AND ".join(conds) or None


def _ts(value: datetime) -> str:
    return f"TIMESTAMPTZ {quote_literal(value.astimezone(UTC).isoformat())}"
