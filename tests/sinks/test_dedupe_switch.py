"""`webhouse.dedupe_ids`: on, a natural id lands once; off (`webhouse chaos --no-dedupe`), every
copy lands, so only offsets can keep a record from landing twice."""

from __future__ import annotations

from pathlib import Path

from tests.sinks.land import Webhouse
from tools.records import event


def _copies(root: Path, dedupe: bool) -> int:
    wh = Webhouse(root, dedupe_ids=dedupe)
    wh.events([event("m-1", name="Product Viewed"), event("m-1", name="Product Viewed")])  # in one batch
    wh.events([event("m-1", name="Product Viewed")])  # and against the table
    row = wh.connect().execute("SELECT count(*) FROM events WHERE message_id = 'm-1'").fetchone()
    assert row is not None
    return int(row[0])


def test_ids_land_once_with_dedupe_and_every_copy_without(tmp_path: Path) -> None:
    assert _copies(tmp_path / "on", dedupe=True) == 1
    assert _copies(tmp_path / "off", dedupe=False) == 3
