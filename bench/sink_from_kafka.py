"""The sink from Kafka: enriched events read from their topic and landed in the webhouse tables.

``sink_throughput.py`` lands rows without Kafka: that is the sink goal's figure in compare.py
(issue 11). This bench runs the same landing the way ``webhouse sink`` does it, from a topic on a
broker. It consumes and decodes each enriched event, and derives the rows of every table the
enriched events feed: events, orders, e-mail interactions. Then it lands each table's rows with
their offsets in one Delta commit per table and batch, and commits the Kafka offsets.

    .venv/bin/python bench/sink_from_kafka.py [--events N] [--rounds R] [--bootstrap HOST:PORT]

The enriched events are the worker stage's own output for the bench's raw events
(``workload.py``), made once in process (``route_view.enriched_events``). Each round writes them to
a fresh topic prefix. A ``SinkRunner`` then lands them into fresh tables, with the dedupe on and
off alternated. It owns every partition (as ``--assign-all`` does) and ends once caught up (as
``--exit-when-idle`` does).

What the timed part holds and leaves out:
- it holds everything ``SinkRunner.run`` does, start-up included: the topics check, the
  assignment, and the tables' first commits;
- it also holds the wait for the last batch: a batch that is not full lands once its oldest row
  is ``webhouse.batch_max_seconds`` (3 s) old, and the run ends after that. So events/s is
  lower than a steady stream's; CPU per event, and the events it lands per CPU second, are not;
- compaction and vacuum are off, so the figure is the landing path's alone;
- the batch settings are the defaults (``webhouse.batch_max_rows`` 50,000, 3 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import harness
import route_view

from pipeline.kafka_local import broker_or_ephemeral
from pipeline.settings import Settings, WebhouseSettings
from pipeline.topics import Topics
from sinks.pii import PiiHasher
from sinks.runner import SinkRunner
from sinks.tables import build_tables, default_specs

PARTITIONS = 2


def enriched_events(count: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every enriched event the worker stage makes of the bench's first ``count``
    raw events, in process (``route_view.enriched_events``)."""
    return [(m.key or b"", m.value) for m in route_view.enriched_events(count)]


def land_once(
    bootstrap: str, events: Sequence[tuple[bytes, bytes]], dedupe: bool, root: Path
) -> dict[str, float]:
    """One round: a fresh topic holding ``events``, landed into fresh tables; figures of the run."""
    kafka = harness.fresh_topics(bootstrap, PARTITIONS)
    topics = Topics.from_settings(kafka)
    harness.preload(bootstrap, topics.enriched_events, events)
    webhouse = WebhouseSettings(
        root=str(root / kafka.topic_prefix),
        dedupe_ids=dedupe,
        compact_every_seconds=0,
        vacuum_every_seconds=0,
        consumer_group=f"{kafka.topic_prefix}-sink",
    )
    settings = Settings(kafka=kafka, webhouse=webhouse)
    specs = [s for s in default_specs("enriched") if s.source == "enriched_events"]
    runner = SinkRunner(settings, build_tables(PiiHasher(webhouse.pii_hmac_secret), specs))
    started, cpu = time.perf_counter(), time.process_time()
    rows = runner.run(exit_when_idle=True, assign_all=True)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events_per_s": len(events) / seconds,
        "rows_per_s": rows / seconds,
        "rows": rows,
        "cpu_us_per_event": cpu_s / len(events) * 1e6,
        "seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", help="an existing broker (default: start a throwaway one)")
    args = parser.parse_args(argv)
    print(f"making the enriched events of {args.events} raw events ...", file=sys.stderr)
    events = enriched_events(args.events)
    results: dict[str, list[dict[str, float]]] = {"dedupe on": [], "dedupe off": []}
    with broker_or_ephemeral(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("dedupe on", "dedupe off") if r % 2 == 0 else ("dedupe off", "dedupe on")
            for name in order:
                figures = land_once(bootstrap, events, name == "dedupe on", Path(tmp))
                results[name].append(figures)
                print(f"  round {r + 1}: {name:10} {figures['events_per_s']:9,.0f} events/s "
                      f"{figures['rows_per_s']:9,.0f} rows/s {figures['cpu_us_per_event']:5.0f} us/event "
                      f"({figures['rows']:.0f} rows)", file=sys.stderr)  # fmt: skip
    header = f"| sink from Kafka, {len(events)} enriched events | events/s median (min) | rows/s median |"
    print(header + " CPU us/event | events per CPU second |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        eps = [r["events_per_s"] for r in runs]
        cpu_us = statistics.median(r["cpu_us_per_event"] for r in runs)
        print(f"| {name} | {statistics.median(eps):,.0f} ({min(eps):,.0f}) | "
              f"{statistics.median(r['rows_per_s'] for r in runs):,.0f} | {cpu_us:.0f} | "
              f"{1e6 / cpu_us:,.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
