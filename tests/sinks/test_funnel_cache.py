"""The funnel's per-day cache answers exactly what the funnel computed from the events answers.

After every change a webhouse sees (events appended to a day, a device linked to a customer, a
device moving to another customer, a compaction, a ``forget``), a connection over the cache and
one computing the funnel live must print the same rows, also cut to a window through the middle
of days; and a refresh recomputes only the days that changed.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sinks.duck import connect
from sinks.funnel_cache import Refresh, cache_dir, install_cached_funnel
from sinks.maintenance import compact, forget
from sinks.window import Window
from tests.sinks.land import Webhouse
from tools.records import T0, event, link

STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
VIEWS = ("funnel", "funnel_overall", "funnel_by_campaign")
DAY = timedelta(days=1)


def _rows(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {view: con.sql(f"SELECT * FROM {view}").fetchall() for view in VIEWS}


def _answers(wh: Webhouse, window: Window | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cached, live) funnel rows."""
    cached = wh.settings
    live = cached.model_copy(update={"webhouse": cached.webhouse.model_copy(update={"funnel_cache": False})})
    return _rows(connect(cached, window)), _rows(connect(live, window))


def _refresh(wh: Webhouse) -> Refresh:
    """A refresh on its own, to see what it recomputed."""
    settings = wh.settings.model_copy(
        update={"webhouse": wh.settings.webhouse.model_copy(update={"funnel_cache": False})}
    )
    con = connect(settings)
    events = wh.store.open("events")
    assert events is not None
    refreshed = install_cached_funnel(con, wh.settings.webhouse.root, STEPS, events, Window())
    assert refreshed is not None
    return refreshed


def _step(n: int, device: str, day: int, minute: int, **kw: Any) -> dict[str, Any]:
    at = T0 + day * DAY + timedelta(minutes=minute)
    return event(f"{device}-{day}-{minute}-{n}", name=STEPS[n], anonymous_id=device, at=at, **kw)


def test_only_changed_days_are_recomputed(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events(
        [
            _step(0, "dev-a", 0, 1),
            _step(1, "dev-a", 0, 2),
            _step(0, "dev-a", 2, 1),
            _step(0, "dev-b", 1, 5, user_id="cust-1"),
            _step(0, "dev-c", 3, 5),
        ]
    )
    assert _refresh(wh).recomputed_days == 4  # first build: every day
    manifest = tmp_path / "_cache"
    written = {p: p.stat().st_mtime_ns for p in manifest.rglob("*")}
    assert _refresh(wh) == Refresh(cached_days=4, recomputed_days=0, moved_devices=0)
    assert {p: p.stat().st_mtime_ns for p in manifest.rglob("*")} == written  # nothing rewritten

    wh.events([_step(1, "dev-c", 3, 9)])  # one day's events change
    assert _refresh(wh).recomputed_days == 1

    # dev-a signs in: its anonymous funnel events are on days 0 and 2, which now count for cust-1
    wh.land("identity", [link("dev-a", "cust-1", T0 + 4 * DAY)])
    refreshed = _refresh(wh)
    assert (refreshed.recomputed_days, refreshed.moved_devices) == (2, 1)
    cached, live = _answers(wh)
    assert cached == live


def test_a_link_merges_visitor_days_in_the_cached_answer(tmp_path: Path) -> None:
    """Retroactive stitching: an anonymous device's step 2 and its customer's step 1 on the same
    day become one visitor-day reaching step 2 once the link lands, after the day was cached."""
    wh = Webhouse(tmp_path)
    wh.events([_step(0, "dev-x", 0, 1, user_id="cust-9"), _step(1, "dev-y", 0, 3)])
    before, _ = _answers(wh)
    wh.land("identity", [link("dev-y", "cust-9", T0 + DAY)])
    after, live = _answers(wh)
    assert after == live
    overall = {row[1]: row[2] for row in after["funnel_overall"]}
    assert overall["Product Added"] == 1 and overall["Product Viewed"] == 1
    assert before != after


def _random_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(n):
        device = f"dev-{rng.randrange(8)}"
        who = {"user_id": f"cust-{rng.randrange(3)}"} if rng.random() < 0.25 else {}
        extra = {"campaign": rng.choice(["spring", "winback"])} if rng.random() < 0.3 else {}
        step, day, minute = rng.randrange(len(STEPS)), rng.randrange(4), rng.randrange(24 * 60)
        rows.append(_step(step, device, day, minute, **who, **extra) | {"message_id": f"m{rng.random()}"})
    return rows


@pytest.mark.parametrize("seed", range(3))
def test_cached_funnel_equals_live_through_random_changes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    wh = Webhouse(tmp_path)
    window = Window(T0 + timedelta(hours=7), T0 + 2 * DAY + timedelta(hours=3))  # cuts days 0 and 2
    wh.events(_random_events(rng, 40))
    for k in range(6):
        change = rng.choice(["events", "link", "link", "compact"])
        if change == "events":
            wh.events(_random_events(rng, 10))
        elif change == "link":  # new, or the device moves to another customer (latest wins)
            device, customer = f"dev-{rng.randrange(8)}", f"cust-{rng.randrange(3)}"
            wh.land("identity", [link(device, customer, T0 + (10 + k) * DAY)])
        else:
            compact(wh.store, [wh.tables["events"].spec])
        cached, live = _answers(wh)
        assert cached == live, (k, change)
        assert cached["funnel"]
    cut_cached, cut_live = _answers(wh, window)
    assert cut_cached == cut_live
    assert cut_cached != _answers(wh)[0]


def test_forget_deletes_the_cache(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events([_step(0, "dev-k", 0, 1)])
    wh.land("identity", [link("dev-k", "kate-77")])
    _answers(wh)
    cache = cache_dir(str(tmp_path))
    assert cache is not None and any(cache.rglob("*.parquet"))
    forget(wh.store, [t.spec for t in wh.tables.values()], "kate-77")
    assert not cache.exists()
    cached, live = _answers(wh)
    assert cached == live


def test_a_root_the_cache_cannot_be_written_to_still_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only root (here: ``_cache`` is a file, which stops root too) is computed in full."""
    wh = Webhouse(tmp_path)
    wh.events([_step(0, "dev-r", 0, 1), _step(1, "dev-r", 0, 2)])
    (tmp_path / "_cache").write_text("not a directory")
    cached, live = _answers(wh)
    assert cached == live and cached["funnel_overall"][1][2] == 1
    assert "funnel cache unusable" in caplog.text
