"""No personal data in clear anywhere: events carrying e-mail, phone and IP addresses in every
place a client can put them go through the real collector, worker (with the trigger agents)
and sink; then every Kafka topic of the run (raw, downstream, dead letters, the worker's
changelogs) and every file of the webhouse (Parquet read back, Delta logs as bytes) is
searched for the clear values: zero hits."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_local import LocalKafka, free_port
from pipeline.pii import PiiHasher
from pipeline.runtime.control import is_control
from pipeline.settings import KafkaSettings, Settings, WebhouseSettings
from pipeline.topics import Topics
from sinks.duck import connect
from tools.demo.services import ServiceGroup

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PII = PiiHasher(WebhouseSettings().pii_hmac_secret)

EMAIL, USER_EMAIL = "Ada.Lovelace@Example.com", "grace.hopper@example.org"
PHONE, IP = "+44 20 7946 0000", "203.0.113.9"
# What must not be found, lower-cased: the values as sent and the forms they could take.
CLEAR = [
    EMAIL.lower(),
    "ada.lovelace%40example.com",
    USER_EMAIL,
    "grace.hopper%40example.org",
    PHONE,
    "442079460000",
    "2079460000",
    "7946 0000",
    IP,
]
URL = f"https://shop.example/welcome?email={EMAIL.replace('@', '%40')}&phone=%2B44%2020%207946%200000&x=1"


def pii_batch(now: str) -> list[dict[str, Any]]:
    base = {"anonymousId": "a-1", "userId": USER_EMAIL, "timestamp": now, "context": {"ip": IP}}
    return [
        {
            **base,
            "type": "identify",
            "messageId": "m-identify",
            "traits": {"email": EMAIL, "phone": PHONE, "user_email": EMAIL, "phone_number": PHONE},
            "context": {"ip": IP, "traits": {"mobile": PHONE, "email": EMAIL}},
        },
        {
            **base,
            "type": "page",
            "messageId": "m-page",
            "name": "Welcome",
            "context": {
                "ip": IP,
                "page": {
                    "url": URL,
                    "search": f"?email={EMAIL}&mobile={PHONE}",
                    "referrer": f"mailto:{EMAIL}",
                },
                "campaign": {"source": "newsletter", "content": EMAIL},
            },
        },
        {
            **base,
            "type": "track",
            "event": "Signed In",
            "messageId": "m-signin",
            "properties": {"login": EMAIL},
        },
        {
            **base,
            "type": "track",
            "event": "Product Viewed",
            "messageId": "m-view",
            "properties": {"product_id": "p-1", "price": 10, "email": EMAIL, "contact": {"phone": PHONE}},
        },
        {
            **base,
            "type": "track",
            "event": "Order Completed",
            "messageId": "m-order",
            "properties": {
                "order_id": "o-1",
                "revenue": 20.0,
                "currency": "EUR",
                "products": [{"product_id": "p-1", "price": 20.0, "quantity": 1, "gift_to": EMAIL}],
                "customer_email": EMAIL,
                "note": f"call {PHONE} or mail {EMAIL}",
            },
            "traits": {"ip_address": IP},
        },
        {**base, "type": "track", "messageId": "m-bad", "properties": {"email": EMAIL, "phone": PHONE}},
    ]


def clear_hits(text: str) -> list[str]:
    lowered = text.lower()
    return [value for value in CLEAR if value.lower() in lowered]


def topic_hits(bootstrap: str, prefix: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Messages per topic of the run, and the clear values found in each topic's keys and values.

    Read uncommitted, to the end of every partition: records of aborted transactions are on the
    broker too, and must not hold clear values either. Transaction markers are not records."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"grep-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    counts: dict[str, int] = {}
    hits: dict[str, list[str]] = {}
    try:
        metadata = consumer.list_topics(timeout=10).topics
        for topic in sorted(t for t in metadata if t.startswith(prefix)):
            parts = []
            for p in metadata[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    parts.append(TopicPartition(topic, p, low))
            counts[topic] = 0
            if not parts:
                continue
            consumer.assign(parts)
            unfinished = {tp.partition for tp in parts}
            deadline = time.monotonic() + 30
            while unfinished and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        unfinished.discard(msg.partition())
                    continue
                if not is_control(msg.headers()):  # the worker's progress records: not a message of the run
                    counts[topic] += 1
                raw = (msg.key() or b"") + b"\x00" + (msg.value() or b"")
                found = clear_hits(raw.decode("utf-8", "replace"))
                if found:
                    hits.setdefault(topic, []).extend(found)
            assert not unfinished, f"partitions {sorted(unfinished)} of {topic} not read to the end"
            consumer.unassign()
    finally:
        consumer.close()
    return counts, hits


def file_hits(root: Path) -> tuple[int, dict[str, list[str]]]:
    parquet_files = 0
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            parquet_files += 1
            text = json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
        else:
            text = path.read_bytes().decode("utf-8", "replace")
        found = clear_hits(text)
        if found:
            hits[str(path.relative_to(root))] = found
    return parquet_files, hits


def landed(settings: Settings, table: str) -> int:
    con = connect(settings)
    try:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    except Exception:  # no view yet: the sink has not committed to that table
        return 0
    finally:
        con.close()
    return int(row[0]) if row else 0


def test_no_clear_pii_on_any_topic_or_in_any_file(kafka_broker: LocalKafka, tmp_path: Path) -> None:
    prefix = f"pii{uuid.uuid4().hex[:8]}"
    tables = tmp_path / "tables"
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, topic_prefix=prefix, default_partitions=2)
    settings = Settings(kafka=kafka, webhouse=WebhouseSettings(root=str(tables)))
    ensure_topics(kafka.bootstrap_servers, Topics.from_settings(kafka).specs())
    port = free_port()
    env = {
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_KAFKA__DEFAULT_PARTITIONS": "2",
        "WEBHOUSE_WEBHOUSE__ROOT": str(tables),
        "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS": "1",
        "WEBHOUSE_WEBHOUSE__CONSUMER_GROUP": f"{prefix}-sink",
        "WEBHOUSE_WORKER__DATA_DIR": str(tmp_path / "worker"),
        "WEBHOUSE_WORKER__SESSION__ALLOWED_LATENESS_S": "0",
        "WEBHOUSE_COLLECTOR__PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    with ServiceGroup(env=env, log_dir=tmp_path / "logs") as group:
        collector = group.start("collector", "collector")
        group.wait_until(collector, lambda: _ok(f"{url}/health"), 60, "answering")
        group.start("worker", "worker", extra_env={"WEBHOUSE_METRICS__PORT": str(free_port())})
        group.start("sink", "sink", extra_env={"WEBHOUSE_METRICS__PORT": str(free_port())})
        answer = requests.post(f"{url}/v1/batch", json={"batch": pii_batch(now)}, auth=("dev-write-key", ""))
        assert answer.status_code == 200, answer.text
        assert (answer.json()["accepted"], answer.json()["rejected"]) == (5, 1)
        assert clear_hits(answer.text) == []  # the error detail does not echo them either
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            group.check_alive()
            if landed(settings, "events") >= 5 and landed(settings, "dead_letters") >= 1:
                break
            time.sleep(1)
        assert landed(settings, "events") == 5
        time.sleep(8)  # the trigger agents, identity and profile outputs after the events
        con = connect(settings)
        try:
            customers = con.execute("SELECT DISTINCT customer_id, user_id FROM events").fetchall()
        finally:
            con.close()
    # The user id that was an e-mail address is its pseudonym, the same as traits.email would be:
    # every event of the customer is stitched to it.
    assert customers == [(PII.hash("email", USER_EMAIL), PII.hash("email", USER_EMAIL))]

    counts, topic_found = topic_hits(kafka.bootstrap_servers, prefix)
    assert counts[f"{prefix}.events.raw"] == 5 and counts[f"{prefix}.events.enriched"] == 5
    assert counts[f"{prefix}.deadletter"] >= 1
    assert any("changelog" in t and n for t, n in counts.items())  # the worker's state was searched too
    parquet_files, file_found = file_hits(tables)
    assert parquet_files >= 3
    assert (topic_found, file_found) == ({}, {})


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
