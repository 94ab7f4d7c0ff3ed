"""Where a profiled worker's time goes: py-spy's raw (collapsed) stacks summed into a few buckets.

    py-spy record --pid PID --format raw --output worker.pyspy.txt    # compare.py --profile does this
    .venv/bin/python bench/profile_split.py worker.pyspy.txt

Two splits of the same samples (py-spy leaves idle threads out by default):

- activity: from the innermost frame outwards, the first frame that names a known piece of
  work (Avro decode or encode, the user-agent parse, JSON state, sessionization, ...);
  frames of generic helpers (``re``, ``datetime``, ``typing``) are looked through;
- stage: the innermost frame of ``triggers/`` or ``processors/``, else the runtime and the Kafka
  client (faust and aiokafka in profiles from before 2 December 2026): who asked for the work.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# (bucket, pattern on "function (file:line)"), tried in order on each frame, innermost first.
ACTIVITY: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("waiting in select() (py-spy counts it; mostly idle)", r"Selector\.select \(selectors"),
        ("user-agent parse", r"ua_parser/|enrichment/useragent\.py"),
        # fastavro and cavro are compiled: their time shows on the Python line that calls them.
        ("Avro decode", r"Serde\.decode|schemaless_reader|CavroCodec\.read"),
        (
            "Avro encode and splice",
            r"Serde\.encode|schemaless_writer|EventCodec\.|CavroCodec\.write|flat_avro\.py",
        ),
        ("the event's view (headers)", r"pipeline/event_view"),
        (
            "JSON (states, held inputs, changelog)",
            r"/json/|fast_json|to_bytes|from_bytes|to_dict|from_dict|to_json|from_json",
        ),
        ("enrichment (URL, referrer, clock, geo)", r"processors/enrichment/"),
        ("sessionization", r"processors/sessions/"),
        ("identity", r"processors/identity"),
        ("triggers rules and profiles", r"triggers/"),
        ("worker stage (other)", r"processors/worker/"),
        ("runtime: consume, produce, commit, stores", r"pipeline/runtime/"),
        ("Kafka client", r"aiokafka/|confluent_kafka"),
        ("faust / mode framework (before 2 December 2026)", r"faust/|mode/|venusian/"),
        ("asyncio machinery (tasks, futures, callbacks)", r"asyncio/"),
    )
)
STAGE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("trigger stages (triggers/)", re.compile(r"triggers/")),
    ("worker stage (processors/)", re.compile(r"processors/")),
)
FRAMEWORK = "runtime and Kafka client (pipeline/runtime, confluent-kafka; faust before 2 December 2026)"


def frames(stack: str) -> list[str]:
    """Frames innermost first, as 'function (file:line)'."""
    return list(reversed(stack.split(";")))


def bucket(stack: list[str], rules: tuple[tuple[str, re.Pattern[str]], ...], default: str) -> str:
    for frame in stack:
        for name, pattern in rules:
            if pattern.search(frame):
                return name
    return default


def split(lines: list[str]) -> tuple[Counter[str], Counter[str], int]:
    activity: Counter[str] = Counter()
    stage: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        innermost_first = frames(stack)
        activity[bucket(innermost_first, ACTIVITY, "other")] += n
        stage[bucket(innermost_first, STAGE, FRAMEWORK)] += n
    return activity, stage, total


def table(title: str, counts: Counter[str], total: int) -> str:
    rows = [f"| {title} | share of samples |", "|---|---|"]
    rows += [f"| {name} | {n / total:.0%} |" for name, n in counts.most_common()]
    return "\n".join(rows)


def main(path: str) -> int:
    activity, stage, total = split(Path(path).read_text().splitlines())
    if not total:
        print(f"{path}: no samples", file=sys.stderr)
        return 1
    print(f"{total} samples")
    print(table("activity (innermost known frame)", activity, total))
    print()
    print(table("stage (innermost triggers/ or processors/ frame)", stage, total))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
