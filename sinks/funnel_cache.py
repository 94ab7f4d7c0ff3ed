"""The funnel's per-day counts kept between connections, recomputed only for days that changed.

Why: the funnel reads every funnel event of every day and groups them into visitor-days (at 10M
events ~4.5 s of CPU), and no rollup the sink could keep is both small and exact under
retroactive stitching. But a day's counts (``analyses.funnel_days_sql``) depend on two things
only: that day's events and the identity links of its anonymous funnel events. So each day's
counts are kept, with what they were computed from, and a connection recomputes only:

- days whose files changed: Delta never rewrites a file, so a day's sorted file paths (its
  partition's add actions) fingerprint its events; an append, a compaction or a ``forget`` of
  that day changes them;
- days holding an anonymous funnel event of a device whose latest link changed (a new link, a
  device moving to another customer, a link forgotten): the cache keeps, per day, the hashes of
  those devices, and the links as hashes, and compares them with the current identity map.

What is kept, under ``<root>/_cache/funnel-<key>/`` (key: the steps, ``FORMAT`` and the DuckDB
version, whose ``hash()`` the cache stores): a manifest (day -> fingerprint and its device file),
the per-day counts, the links, and the per-day device hashes (64 bits: a collision only
recomputes a day that did not need it, or, for a device moving between two customers whose
hashes collide, at odds of about 2^-64, misses one move; md5 instead cost twice the time).
Files are written first and the manifest replaced last, so a crash or a concurrent reader sees
the old manifest or the new one; superseded files are deleted ``GRACE_S`` later. A root the
analyst cannot write (read-only) is not cached: the funnel is computed in full, with a warning.
``sinks.maintenance.forget`` deletes the whole cache.

A refresh costs the changed days' share of the full computation: a day of new events costs
about 1/365 of it; a device linked now whose anonymous history spans many days recomputes each of
those days. A ``--since/--until`` window takes whole days in it from the cache and computes the
days it cuts through from their own files (cut by the window).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from sinks.analyses import funnel_days_sql, funnel_event_filter, stitched_events_sql
from sinks.snapshot import quote_literal, readable_by_duckdb, register_snapshot
from sinks.window import Window

FORMAT = 1  # bump when the funnel's definition or this layout changes: older caches are ignored
DAY_COLUMN = "event_date"
CACHED_DAYS = "__funnel_days_cached"  # the connection's table of cached per-day counts (window applied)
LIVE_EVENTS = "__funnel_live_events"  # the stitched events of the days computed now (window applied)
_WORK = "__funnel_work"
GRACE_S = 600.0  # superseded cache files live this long after the refresh that replaced them

log = logging.getLogger(__name__)


def cache_dir(root: str) -> Path | None:
    """Where the caches of a webhouse root live; None for an object-store root (not cached)."""
    if "://" in root and not root.startswith("file://"):
        return None
    return Path(urlparse(root).path if root.startswith("file://") else root) / "_cache"


def files_by_day(dt: DeltaTable) -> dict[str | None, list[str]]:
    """The snapshot's files per ``event_date`` partition (None: a NULL day), as paths DuckDB reads."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    base = urlparse(dt.table_uri).path.rstrip("/")
    days: dict[str | None, list[str]] = {}
    for path, day in zip(
        actions["path"].to_pylist(), actions[f"partition.{DAY_COLUMN}"].to_pylist(), strict=True
    ):
        days.setdefault(day, []).append(f"{base}/{unquote(path)}")
    return {day: sorted(files) for day, files in days.items()}


def fingerprint(files: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(os.path.basename(f) for f in files)).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Refresh:
    """What a refresh did: days taken from the cache, days recomputed, devices whose link changed."""

    cached_days: int
    recomputed_days: int
    moved_devices: int


@dataclass(slots=True)
class Manifest:
    days: dict[str, str] = field(default_factory=dict)  # day -> fingerprint of its files
    devices: dict[str, str] = field(default_factory=dict)  # day -> device-hash file holding it
    counts: str | None = None  # per-day counts file
    links: str | None = None  # link hashes file

    def files(self) -> set[str]:
        named = {*self.devices.values(), self.counts, self.links}
        return {f for f in named if f is not None}


def full_days(window: Window, days: Iterable[str]) -> tuple[set[str], set[str]]:
    """(days wholly inside ``window``, days it cuts through) among ``days``."""
    whole: set[str] = set()
    cut: set[str] = set()
    for day in days:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        end = start + timedelta(days=1)
        if (window.since is not None and window.since >= end) or (
            window.until is not None and window.until <= start
        ):
            continue
        inside = (window.since is None or window.since <= start) and (
            window.until is None or window.until >= end
        )
        (whole if inside else cut).add(day)
    return whole, cut


class FunnelCache:
    """The cache of one funnel (its steps) under one webhouse root."""

    def __init__(self, directory: Path, steps: Sequence[str]) -> None:
        key = hashlib.sha256(json.dumps([FORMAT, duckdb.__version__, list(steps)]).encode()).hexdigest()[:12]
        self.dir = directory / f"funnel-{key}"
        self.steps = list(steps)

    # -- the manifest -------------------------------------------------------------------------

    def _load(self) -> Manifest:
        try:
            raw = json.loads((self.dir / "manifest.json").read_text())
        except FileNotFoundError:
            return Manifest()
        manifest = Manifest(raw["days"], raw["devices"], raw["counts"], raw["links"])
        if not all((self.dir / f).exists() for f in manifest.files()):
            return Manifest()  # a file is gone (deleted by hand or by a racing refresh): start over
        return manifest

    def _save(self, manifest: Manifest) -> None:
        tmp = self.dir / f"manifest.{uuid.uuid4().hex}.tmp"
        tmp.write_text(
            json.dumps(
                {
                    "days": manifest.days,
                    "devices": manifest.devices,
                    "counts": manifest.counts,
                    "links": manifest.links,
                }
            )
        )
        os.replace(tmp, self.dir / "manifest.json")

    def _clean(self, manifest: Manifest) -> None:
        """Delete files the manifest no longer names once they are ``GRACE_S`` old: a reader that
        loaded the previous manifest a moment ago may still be reading them."""
        keep = manifest.files() | {"manifest.json"}
        cutoff = time.time() - GRACE_S
        for path in self.dir.iterdir():
            if path.name not in keep and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)

    def _path(self, name: str) -> str:
        return quote_literal(str(self.dir / name))

    # -- the refresh ----------------------------------------------------------------------------

    def refresh(self, con: duckdb.DuckDBPyConnection, events: DeltaTable, window: Window) -> Refresh | None:
        """Bring the cache up to the snapshot ``events`` (the one ``con``'s views show) and the
        identity map in ``con``; create ``CACHED_DAYS`` and ``LIVE_EVENTS`` for ``window``.
        None (nothing created) when the add actions do not name exactly the snapshot's files."""
        by_day = files_by_day(events)
        if sorted(f for files in by_day.values() for f in files) != sorted(events.file_uris()):
            log.warning("funnel cache: the events' add actions do not match their files; not cached")
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        old = self._load()
        current = {day: fingerprint(files) for day, files in by_day.items() if day is not None}
        moved = self._moved_devices(con, old)
        stale = {d for d, fp in current.items() if old.days.get(d) != fp} | (
            self._days_of(con, old, moved) & set(current)
        )
        new = Manifest(
            days=current,
            devices={d: f for d, f in old.devices.items() if d in current and d not in stale},
            counts=old.counts,
            links=old.links,
        )
        if stale or set(old.days) != set(current) or moved or old.counts is None:
            self._recompute(con, events, by_day, stale, old, new)
            self._save(new)
            self._clean(new)
        whole, cut = full_days(window, current) if window else (set(current), set())
        self._publish(con, events, by_day, new, whole, cut, window)
        return Refresh(len(whole), len(stale), moved)

    def _moved_devices(self, con: duckdb.DuckDBPyConnection, old: Manifest) -> int:
        """Hash the current links into ``_WORK_links``; devices whose link differs from the cache's
        into ``_WORK_moved`` (all devices when nothing is cached); returns how many moved."""
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_WORK}_links AS SELECT hash(anonymous_id) AS a, "
            "hash(customer_id) AS c FROM identity_latest"
        )
        if old.links is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_WORK}_moved AS SELECT a FROM {_WORK}_links")
        else:
            was = f"read_parquet({self._path(old.links)})"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {_WORK}_moved AS SELECT DISTINCT a FROM "
                f"((SELECT a, c FROM {_WORK}_links EXCEPT SELECT a, c FROM {was}) UNION ALL "
                f"(SELECT a, c FROM {was} EXCEPT SELECT a, c FROM {_WORK}_links))"
            )
        ((count,),) = con.execute(f"SELECT count(*) FROM {_WORK}_moved").fetchall()
        return int(count)

    def _days_of(self, con: duckdb.DuckDBPyConnection, old: Manifest, moved: int) -> set[str]:
        """The cached days holding an anonymous funnel event of a moved device."""
        if not moved or not old.devices:
            return set()
        pairs = ", ".join(
            f"({quote_literal(d)}, {quote_literal(str(self.dir / f))})" for d, f in old.devices.items()
        )
        files = "[" + ", ".join(self._path(f) for f in sorted(set(old.devices.values()))) + "]"
        rows = con.execute(
            f"SELECT DISTINCT h.day FROM read_parquet({files}, filename = true) h "
            f"JOIN (VALUES {pairs}) kept(day, file) ON kept.day = h.day AND kept.file = h.filename "
            f"SEMI JOIN {_WORK}_moved m ON m.a = h.a"
        ).fetchall()
        return {str(day) for (day,) in rows}

    def _events_view(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        events: DeltaTable,
        files: list[str],
        window: Window | None = None,
    ) -> None:
        """``name``: the stitched events of ``files`` (cut by ``window``), as ``events_stitched``."""
        raw = f"{name}_raw"
        register_snapshot(con, raw, events, partial(window.where, "events") if window else None, files)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {stitched_events_sql(raw)}")

    def _recompute(
        self,
        con: duckdb.DuckDBPyConnection,
        events: DeltaTable,
        by_day: dict[str | None, list[str]],
        stale: set[str],
        old: Manifest,
        new: Manifest,
    ) -> None:
        """Compute the stale days, write their counts and device hashes, the merged counts and
        the links; ``new`` then names the files written."""
        files = [f for d in sorted(stale) for f in by_day[d]]
        self._events_view(con, f"{_WORK}_events", events, files)
        tag = uuid.uuid4().hex
        counts, devices, links = f"counts-{tag}.parquet", f"devices-{tag}.parquet", f"links-{tag}.parquet"
        kept = ", ".join(quote_literal(d) for d in new.devices) or "NULL"
        previous = (
            f"SELECT day, campaign, reached, n FROM read_parquet({self._path(old.counts)}) "
            f"WHERE day IN ({kept})"
            if old.counts is not None
            else "SELECT NULL::VARCHAR AS day, NULL::VARCHAR AS campaign, 0 AS reached, 0::BIGINT AS n "
            "WHERE false"
        )
        con.execute(
            f"COPY (({funnel_days_sql(self.steps, f'{_WORK}_events')}) UNION ALL ({previous}) ORDER BY day) "
            f"TO {self._path(counts)} (FORMAT parquet)"
        )
        con.execute(
            f"COPY (SELECT DISTINCT hash(anonymous_id) AS a, {DAY_COLUMN} AS day "
            f"FROM {_WORK}_events_raw WHERE {funnel_event_filter(self.steps)} AND customer_id IS NULL "
            f"AND anonymous_id IS NOT NULL ORDER BY day) TO {self._path(devices)} (FORMAT parquet)"
        )
        con.execute(f"COPY {_WORK}_links TO {self._path(links)} (FORMAT parquet)")
        new.devices.update(dict.fromkeys(stale, devices))
        new.counts, new.links = counts, links

    def _publish(
        self,
        con: duckdb.DuckDBPyConnection,
        events: DeltaTable,
        by_day: dict[str | None, list[str]],
        manifest: Manifest,
        whole: set[str],
        cut: set[str],
        window: Window,
    ) -> None:
        """The connection's cached counts (whole days in the window) and live events (the days it
        cuts, and events with no day), which the funnel view unions."""
        days = ", ".join(quote_literal(d) for d in sorted(whole)) or "NULL"
        assert manifest.counts is not None
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {CACHED_DAYS} AS SELECT day, campaign, reached, n "
            f"FROM read_parquet({self._path(manifest.counts)}) WHERE day IN ({days})"
        )
        live = [f for d in sorted(cut) for f in by_day[d]] + by_day.get(None, [])
        self._events_view(con, LIVE_EVENTS, events, live, window)
        con.execute(f"DROP TABLE IF EXISTS {_WORK}_links; DROP TABLE IF EXISTS {_WORK}_moved")


def install_cached_funnel(
    con: duckdb.DuckDBPyConnection, root: str, steps: Sequence[str], events: DeltaTable, window: Window
) -> Refresh | None:
    """Refresh the funnel cache and make ``con``'s funnel views read it; None when this root or
    table cannot be cached (an object-store root, Delta features DuckDB cannot read)."""
    directory = cache_dir(root)
    if directory is None or not readable_by_duckdb(events) or not steps:
        return None
    if DAY_COLUMN not in events.metadata().partition_columns:
        return None  # a table written with another layout: no day to keep counts by
    try:
        return FunnelCache(directory, steps).refresh(con, events, window)
    except (OSError, duckdb.IOException) as exc:  # e.g. a read-only root: still right, computed in full
        log.warning("funnel cache unusable under %s (%s): the funnel reads every day", directory, exc)
        return None
