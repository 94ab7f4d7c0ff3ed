"""Identity end to end: the real worker and the real sink on the real broker (issue 18).

Raw events go to the raw topic on the partitions the collector's keys would give them (the same
partition for a customer's device and its server-side events, as when their keys hash alike), in
event-time order per partition (none is late);
the worker runs as a child process; the sink lands its outputs; DuckDB reads the webhouse.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.runtime.control import send_end_of_input
from pipeline.settings import KafkaSettings, Settings, WebhouseSettings
from pipeline.topics import Topics
from processors.worker.runner import start_worker_process
from sinks.duck import connect
from sinks.pii import PiiHasher
from sinks.runner import SinkRunner
from sinks.tables import build_tables, default_specs
from tests.processors.test_worker_kafka import stop
from tests.processors.worker_support import T0, Outputs, produce, raw_event, worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def at(seconds: float) -> Any:
    return T0 + timedelta(seconds=seconds)


def server(mid: str, user: str, seconds: float, **fields: Any) -> dict[str, Any]:
    return raw_event(mid, None, at(seconds), user_id=user, channel="server", **fields)


def order(order_id: str, revenue: float) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "commerce": {"order_id": order_id, "revenue": revenue},
    }


EVENTS: list[tuple[int, dict[str, Any]]] = [
    # A customer seen only by a server: its own visit, with its page views.
    (0, server("srv-p1", "srv-1", 0, type="page")),
    (0, server("srv-p2", "srv-1", 10, type="page")),
    (0, server("srv-p3", "srv-1", 20, type="page")),
    # A device that signs in mid-visit: one visit; identify then alias per the Segment spec.
    (0, raw_event("a1", "dev-a", at(30))),
    (0, raw_event("a2", "dev-a", at(35), type="identify", user_id="ada")),
    (0, raw_event("a3", "dev-a", at(40), user_id="ada")),
    (0, raw_event("a4", "dev-a", at(45), type="alias", user_id="ada-2", previous_id="ada")),
    (0, raw_event("al", None, at(46), type="alias", user_id="carl", previous_id="old-carl")),
    # A server order (and its client retry) joins bob's open visit on his device's partition.
    (1, raw_event("b1", "dev-b", at(0), type="track", event="Signed In", user_id="bob")),
    (1, raw_event("b2", "dev-b", at(10))),
    (1, server("b-order", "bob", 15, **order("B-1", 40.0))),
    (1, server("b-order-retry", "bob", 16, **order("B-1", 40.0))),
    (1, raw_event("b3", "dev-b", at(30))),
    # Thirty devices identifying as "undefined".
    *(
        (d % 2, raw_event(f"u{d}", f"junk-{d}", at(100 + d), type="identify", user_id="undefined"))
        for d in range(30)
    ),
]


def test_identity_and_sessions_of_every_identity_land_in_the_webhouse(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = worker_settings(kafka_settings, tmp_path)
    topics = Topics.from_settings(kafka_settings)
    produce(kafka_settings.bootstrap_servers, topics.raw_events, EVENTS)
    send_end_of_input(kafka_settings.bootstrap_servers, topics.raw_events)  # the last visits close at once
    outputs = Outputs(kafka_settings.bootstrap_servers, topics)
    worker = start_worker_process(settings, tmp_path / "worker.log")
    try:
        outputs.wait_until(
            lambda o: len(o.enriched_ids()) == len(EVENTS) and len(o.records["sessions"]) == 33,
            timeout=120,
            settle=2.0,
        )
    finally:
        stop(worker)
        outputs.close()

    links = sorted(
        (r["anonymous_id"], r["customer_id"], r["source_type"]) for r in outputs.records["identity"]
    )
    assert sorted(set(links)) == [
        ("ada", "ada-2", "alias"),
        ("dev-a", "ada", "identify"),
        ("dev-a", "ada-2", "alias"),
        ("dev-b", "bob", "signed_in"),
        ("old-carl", "carl", "alias"),
    ]
    letters = [d for d in outputs.records["dead"] if d["reason"] == "identity_rejected"]
    assert len(letters) == 30 and {json.loads(d["detail"])["value"] for d in letters} == {"undefined"}

    group = f"sink-{kafka_settings.topic_prefix}"
    webhouse = WebhouseSettings(root=str(tmp_path / "webhouse"), consumer_group=group, batch_max_seconds=0.2)
    sink_settings = Settings(kafka=kafka_settings, webhouse=webhouse)
    tables = build_tables(PiiHasher(webhouse.pii_hmac_secret), default_specs(webhouse.events_source))
    SinkRunner(sink_settings, tables).run(exit_when_idle=True)
    con = connect(sink_settings)

    srv = con.sql(
        "SELECT customer_id, event_count, page_view_count FROM sessions WHERE anonymous_id = 'srv-1'"
    ).fetchall()
    assert srv == [("srv-1", 3, 3)]
    dev_a = con.sql("SELECT customer_id, event_count FROM sessions WHERE anonymous_id = 'dev-a'").fetchall()
    assert dev_a == [("ada-2", 4)]  # one visit across the sign-in and the alias
    bob = con.sql(
        "SELECT event_count, revenue, converted FROM sessions WHERE anonymous_id = 'dev-b'"
    ).fetchall()
    assert bob == [(5, 40.0, True)]  # the retried order counted once
    assert con.sql("SELECT count(*) FROM sessions WHERE anonymous_id = 'bob'").fetchall() == [(0,)]
    identity_map = con.sql("SELECT anonymous_id, customer_id FROM identity_map ORDER BY ALL").fetchall()
    assert identity_map == [("ada", "ada-2"), ("dev-a", "ada"), ("dev-a", "ada-2"), ("dev-b", "bob"),
                            ("old-carl", "carl")]  # fmt: skip
    conflicts = con.sql("SELECT rule, field, value, devices FROM identity_conflicts").fetchall()
    assert conflicts == [("blocklist", "user_id", "undefined", 30)]
