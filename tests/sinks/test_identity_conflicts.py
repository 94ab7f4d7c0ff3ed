"""The identity_conflicts view: the worker's identity_rejected dead letters, one row per rule and id."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pipeline.deadletter import DeadLetter
from tests.sinks.land import Webhouse
from tools.records import T0


def rejected(offset: int, rule: str, value: str, device: str | None) -> dict[str, object]:
    detail = {"rule": rule, "field": "user_id", "value": value, "anonymous_id": device, "customer_id": value,
              "linked_devices": 5 if rule == "device_limit" else None}  # fmt: skip
    at = T0 + timedelta(seconds=offset)
    letter = DeadLetter("worker", "identity_rejected", json.dumps(detail), b"{}", at,
                        source_topic="raw", source_partition=0, source_offset=offset)  # fmt: skip
    return letter.to_record()


def test_thirty_devices_on_one_junk_id_are_one_conflict(tmp_path: Path) -> None:
    w = Webhouse(tmp_path)
    letters = [rejected(d, "blocklist", "undefined", f"dev-{d}") for d in range(30)]
    letters += [rejected(40 + d, "device_limit", "shared-42", f"dev-x{d}") for d in range(2)]
    other = DeadLetter(
        "worker", "undecodable", "bad bytes", b"\x00", T0, source_topic="raw", source_offset=99
    )
    w.land("dead_letters", [*letters, other.to_record()])
    rows = (
        w.connect().sql("SELECT rule, field, value, devices, rejections FROM identity_conflicts").fetchall()
    )
    assert rows == [
        ("blocklist", "user_id", "undefined", 30, 30),
        ("device_limit", "user_id", "shared-42", 2, 2),
    ]
