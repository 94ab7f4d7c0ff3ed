"""The identity map keeps one current row per link: each re-sent version updates it (first seen and
its source from the earliest version, last seen the latest), in any order and batching, with or
without id-deduplication (a version is not a copy), and every landing records its offsets."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from sinks.tables import Upsert
from sinks.upsert import fold
from tests.sinks.land import Webhouse
from tools.records import T0, link


def _version(first_h: int, last_h: int, source: str = "identify-d1") -> dict[str, Any]:
    return {
        **link("d1", "c1"),
        "first_seen": T0 + timedelta(hours=first_h),
        "last_seen": T0 + timedelta(hours=last_h),
        "source_event_id": source,
    }


# Two versions share the earliest first seen: the smaller source id breaks the tie.
VERSIONS = [
    _version(5, 5, "late-first"),
    _version(2, 2, "made-it"),
    _version(2, 9, "not-this"),
    _version(3, 7),
]


def _rows(wh: Webhouse) -> list[tuple[Any, ...]]:
    sql = ("SELECT anonymous_id, customer_id, first_seen, last_seen, source_event_id FROM identity_map "
           "ORDER BY ALL")  # fmt: skip
    return wh.connect().execute(sql).fetchall()


def _land(root: Path, batches: list[list[dict[str, Any]]], dedupe: bool = True) -> Webhouse:
    wh = Webhouse(root, dedupe_ids=dedupe)
    for batch in batches:
        wh.land("identity", batch)
    return wh


def test_one_row_per_link_whatever_the_order_and_batching(tmp_path: Path) -> None:
    expected = [("d1", "c1", T0 + timedelta(hours=2), T0 + timedelta(hours=9), "made-it")]
    for i, order in enumerate(itertools.islice(itertools.permutations(VERSIONS), 0, None, 4)):
        one_batch = _land(tmp_path / f"one-{i}", [list(order)])
        each_apart = _land(tmp_path / f"apart-{i}", [[v] for v in order], dedupe=False)
        assert _rows(one_batch) == expected
        assert _rows(each_apart) == expected


def test_a_replayed_version_changes_nothing_but_records_its_offset(tmp_path: Path) -> None:
    wh = _land(tmp_path, [VERSIONS])
    table = wh.tables["identity_map"]
    result = wh.store.append(table, table.to_arrow([VERSIONS[0]]), {"test:replay": 41})
    assert result.rows == 1
    assert wh.store.transaction_version("identity_map", "test:replay") == 41
    assert len(_rows(wh)) == 1


def test_fold_keeps_the_earliest_row_and_the_latest_values() -> None:
    data = pa.table(
        {"k": ["a", "b", "a", "a"], "f": [3, 1, 2, 2], "l": [3, 1, 8, 4], "s": ["x", "y", "z", "w"]}
    )
    folded = fold(data, ("k",), Upsert("f", ("l",), ("s",)), data["k"].combine_chunks())
    got = sorted(zip(*(folded[c].to_pylist() for c in ("k", "f", "l", "s")), strict=True))
    assert got == [("a", 2, 8, "w"), ("b", 1, 1, "y")]  # of the two f=2 rows, the smaller s


def test_a_shared_device_follows_its_most_recently_seen_customer(tmp_path: Path) -> None:
    """c1 signs in, then c2, then c1 again: the device is c1's now (a first-seen-only row said c2)."""
    again = {**link("d1", "c1"), "last_seen": T0 + timedelta(hours=2)}
    wh = _land(tmp_path, [[link("d1", "c1")], [link("d1", "c2", T0 + timedelta(hours=1))], [again]])
    row = wh.connect().execute("SELECT customer_id FROM identity_latest WHERE anonymous_id = 'd1'").fetchone()
    assert row == ("c1",)
