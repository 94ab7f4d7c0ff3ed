"""What keeping ``identity_map`` current costs: MERGE of each batch against append-with-dedupe.

The identity topic re-sends a link each time its last seen moves; the sink MERGEs them into one
row per link (``sinks/upsert.py``). Delta files are copy-on-write, so a merge rewrites every file
holding a matched row; re-sent links of active devices are spread over the table, so that is
most of it. This bench builds a table of ``--links`` links (one compacted file, as
``webhouse compact`` leaves it), then lands ``--rounds`` batches of ``--updates`` re-sent links
(random existing ones, last seen moved) plus ``--new`` new links, alternating per round between
the two ways, each on its own copy of the table:

- ``merge``: the declared upsert (one current row per link);
- ``append``: the former way, the same spec without ``upsert`` (anti-join on the id, first row
  kept: the new links land, re-sent ones are dropped, last seen goes stale).

Prints per way the seconds per batch (min / median) and the Parquet bytes written per batch.

    .venv/bin/python bench/identity_merge.py --links 1000000 --rounds 5 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from pipeline.settings import WebhouseSettings
from sinks.pii import PiiHasher
from sinks.store import DeltaStore
from sinks.tables import Table, default_specs

TS = pa.timestamp("ms", tz="UTC")
BASE_MS = 1_700_000_000_000


def links(names: list[str], customers: list[str], first: list[int], last: list[int]) -> pa.Table:
    n = len(names)
    return pa.table({
        "anonymous_id": names, "customer_id": customers,
        "first_seen": pa.array(first, TS), "last_seen": pa.array(last, TS),
        "source_event_id": [f"ev-{x}" for x in names], "source_type": ["identify"] * n,
    })  # fmt: skip


def parquet_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--links", type=int, default=1_000_000)
    ap.add_argument("--updates", type=int, default=2_000)
    ap.add_argument("--new", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    spec = next(s for s in default_specs() if s.name == "identity_map")
    ways = {
        "merge": Table(spec, PiiHasher("bench")),
        "append": Table(dataclasses.replace(spec, upsert=None), PiiHasher("bench")),
    }
    n = args.links
    names = [f"anon-{i:08d}" for i in range(n)]
    start = links(names, [f"cus-{i // 2:08d}" for i in range(n)], [BASE_MS + i for i in range(n)],
                  [BASE_MS + i for i in range(n)])  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="identity-merge-"))
    stores = {}
    for way, table in ways.items():
        store = DeltaStore(WebhouseSettings(root=str(work / way), pii_hmac_secret="bench"))
        store.append(table, start, {"bench": 0})
        stores[way] = store
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    written: dict[str, list[int]] = {w: [] for w in ways}
    rng = random.Random(1)
    for r in range(args.rounds):
        picked = rng.sample(range(n), args.updates)
        moved = BASE_MS + n + r + 1
        batch = pa.concat_tables([
            links([names[i] for i in picked], [f"cus-{i // 2:08d}" for i in picked],
                  [BASE_MS + i for i in picked], [moved] * len(picked)),
            links([f"new-{r}-{i}" for i in range(args.new)], ["cus-new"] * args.new, [moved] * args.new,
                  [moved] * args.new),
        ])  # fmt: skip
        order = list(ways) if r % 2 == 0 else list(reversed(ways))
        for way in order:
            before = parquet_bytes(work / way)
            t0 = time.perf_counter()
            stores[way].append(ways[way], batch, {"bench": r + 1})
            seconds[way].append(time.perf_counter() - t0)
            written[way].append(parquet_bytes(work / way) - before)
    result = {
        way: {"seconds_min": min(s), "seconds_median": statistics.median(s),
              "bytes_written_median": int(statistics.median(written[way]))}
        for way, s in seconds.items()
    }  # fmt: skip
    result["config"] = vars(args)
    shutil.rmtree(work)
    for way in ways:
        f = result[way]
        print(f"{way:7} {f['seconds_min']:.2f} / {f['seconds_median']:.2f} s per batch, "
              f"{f['bytes_written_median'] / 1e6:.1f} MB written per batch")  # fmt: skip
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
