"""`webhouse import FILE.jsonl`: send history through the collector with its own timestamps.

One Segment event per line (``{"type": "track", "event": ..., "timestamp": ...}``), posted in
batches to the collector's ``/v1/import``, which keeps every event at its own ``timestamp``
(no clock-skew correction), pseudonymises it like live traffic and marks it ``$imported``.
A line that is not a JSON object is reported with its number and not sent; an event the
collector refuses is reported with its line number and reason (and dead-lettered there).
503 (Kafka did not acknowledge) and connection errors are retried with backoff: the
collector's answers are all-or-nothing per batch and events keep their message ids, so a
retry lands nothing twice downstream.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from pipeline.errors import WebhouseError
from pipeline.settings import Settings

MAX_BATCH_BYTES = 400 * 1024  # under the collector's default 512 KB body limit


class ImportFailed(WebhouseError):
    """The collector kept refusing or could not be reached."""


@dataclass
class ImportReport:
    sent: int = 0
    accepted: int = 0
    problems: list[str] = field(default_factory=list)  # "line N: reason: detail"


def read_events(path: Path, report: ImportReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, event) for every line holding a JSON object; other lines are problems."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                report.problems.append(f"line {number}: invalid_json: {exc}")
                continue
            if not isinstance(event, dict):
                report.problems.append(f"line {number}: invalid_event: not a JSON object")
                continue
            yield number, event


def batches(
    events: Iterator[tuple[int, dict[str, Any]]], size: int
) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    batch: list[tuple[int, dict[str, Any]]] = []
    weight = 0
    for number, event in events:
        event_bytes = len(json.dumps(event)) + 1
        if batch and (len(batch) >= size or weight + event_bytes > MAX_BATCH_BYTES):
            yield batch
            batch, weight = [], 0
        batch.append((number, event))
        weight += event_bytes
    if batch:
        yield batch


def post_batch(
    session: requests.Session, url: str, batch: list[tuple[int, dict[str, Any]]], max_retries: int
) -> dict[str, Any]:
    body = {"batch": [event for _, event in batch]}
    for attempt in range(max_retries + 1):
        try:
            answer = session.post(url, json=body, timeout=30)
        except requests.RequestException as exc:
            problem = f"collector unreachable: {exc}"
        else:
            if answer.status_code in (200, 400) and "errors" in answer.json():
                return dict(answer.json())
            if answer.status_code not in (429, 503) and answer.status_code < 500:
                raise ImportFailed(f"the collector refused a batch: {answer.status_code} {answer.text[:300]}")
            problem = f"HTTP {answer.status_code}"
        time.sleep(min(30.0, 0.5 * 2**attempt))
    raise ImportFailed(f"gave up on a batch after {max_retries} retries: {problem}")


def import_file(
    path: Path, url: str, write_key: str, batch_size: int = 500, max_retries: int = 8
) -> ImportReport:
    report = ImportReport()
    with requests.Session() as session:
        session.auth = (write_key, "")
        for batch in batches(read_events(path, report), batch_size):
            outcome = post_batch(session, f"{url.rstrip('/')}/v1/import", batch, max_retries)
            report.sent += len(batch)
            report.accepted += outcome["accepted"]
            for error in outcome["errors"]:
                number = batch[error["index"]][0]
                report.problems.append(f"line {number}: {error['code']}: {error['message']}")
    return report


def _import(args: argparse.Namespace, settings: Settings) -> int:
    collector = settings.collector
    url = args.url or f"http://{collector.host}:{collector.port}"
    write_key = args.write_key or next(iter(collector.write_keys), "")
    report = import_file(Path(args.file), url, write_key, args.batch_size)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(f"imported {report.accepted} of {report.sent} events sent; {len(report.problems)} problems")
    return 0 if not report.problems else 1


def register(sub: Any) -> None:
    command = sub.add_parser(
        "import",
        help="send a JSONL file of Segment events through the collector, each at its own timestamp",
    )
    command.add_argument("file", help="one Segment event (JSON object) per line; each needs a timestamp")
    command.add_argument("--url", help="collector base URL (default: collector.host and collector.port)")
    command.add_argument("--write-key", help="write key (default: the first of collector.write_keys)")
    command.add_argument("--batch-size", type=int, default=500, help="events per request")
    command.set_defaults(func=_import)
