"""Triggers inside the real worker (`webhouse worker`, a child process) on the real broker.

Raw events go in; the worker enriches, stitches and sessionizes them; the trigger agents
registered on the same App fire a cart-abandonment alert onto the alerts topic and to a
loopback webhook receiver that verifies the signature. A consent-withdrawn customer's
alert is suppressed and recorded. After a restart, replayed input emits no duplicate,
and the recovered state still remembers the cooldown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, Producer

from pipeline.runtime.control import Progress, SourceState, watermark_headers
from pipeline.serde import SingleObjectSerde
from pipeline.settings import ENV_PREFIX, KafkaSettings, Settings, TriggerSettings
from pipeline.topics import Topics
from processors.worker.runner import settings_env, start_worker_process
from tests.processors.worker_support import worker_settings

from .builders import RULES_DIR, T0, at, consent, event, ms, session
from .receiver import Receiver

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
SECRET = "integration-secret"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
EVENTS = SingleObjectSerde("customer_event")
ALERTS = SingleObjectSerde("alert")
SESSIONS = SingleObjectSerde("session")
DEAD = SingleObjectSerde("dead_letter")


def raw(mid: str, anon: str, at: datetime, event: str | None = None, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": mid,
        "type": "track" if event else "page",
        "event": event,
        "channel": "web",
        "anonymous_id": anon,
        "timestamp": at,
        "sent_at": at,
        "received_at": at,
        "context": {"page": {"url": f"https://shop.example/{mid}"}, "user_agent": UA},
    }
    record.update(fields)
    return record


def cart(anon: str, user: str, start: datetime, prefix: str, withdraw: bool = False) -> list[dict[str, Any]]:
    """Sign in, consent (maybe withdrawn), add to cart; the visit then goes quiet."""
    at = lambda s: start + timedelta(seconds=s)  # noqa: E731
    events = [
        raw(f"{prefix}-1", anon, at(0), "Signed In", user_id=user),
        raw(f"{prefix}-2", anon, at(5), "Consent Granted", consent={"purposes": ["marketing_email"]}),
    ]
    if withdraw:
        events.append(
            raw(f"{prefix}-3", anon, at(8), "Consent Withdrawn", consent={"purposes": ["marketing_email"]})
        )
    events.append(
        raw(f"{prefix}-4", anon, at(10), "Product Added",
            commerce={"cart_id": "c", "products": [{"product_id": f"{prefix}-p", "category": "books"}]})
    )  # fmt: skip
    return events


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for e in events:
        producer.produce(topic, EVENTS.encode(e), key=e["anonymous_id"].encode(), partition=0)
    assert producer.flush(30) == 0


class AlertLog:
    """Reads a topic (alerts, unless told) from the start, decoding as it goes."""

    def __init__(self, bootstrap: str, topic: str, serde: SingleObjectSerde = ALERTS) -> None:
        self.serde = serde
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
             "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )  # fmt: skip
        self.consumer.subscribe([topic])
        self.records: list[dict[str, Any]] = []

    def wait_until(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        process: subprocess.Popen[bytes],
        timeout: float,
        settle: float = 0,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.records):
            assert process.poll() is None, f"the process under test exited with {process.returncode}"
            self._poll(0.5)
        assert done(self.records), f"timed out; alerts so far: {self.records}"
        end = time.monotonic() + settle
        while time.monotonic() < end:
            self._poll(0.5)

    def _poll(self, seconds: float) -> None:
        for msg in self.consumer.consume(100, timeout=seconds):
            if not msg.error():
                self.records.append(self.serde.decode(cast(bytes, msg.value())))

    def of(self, customer: str) -> list[tuple[str, str, str | None]]:
        return [
            (r["rule_id"], r["status"], r["suppression_reason"])
            for r in self.records
            if r["customer_id"] == customer
        ]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def settings_for(kafka: KafkaSettings, tmp: Path, *urls: str, **triggers_settings: Any) -> Settings:
    base = worker_settings(kafka, tmp)
    triggers = TriggerSettings(
        rules_dir=RULES_DIR,
        webhook_urls=list(urls),
        webhook_secret=SECRET,
        sweep_interval_s=0.5,
        webhook_backoff_base_s=0.1,
        **triggers_settings,
    )
    worker = base.worker.model_copy(update={"extensions": ["triggers.stages"]})
    return base.model_copy(update={"triggers": triggers, "worker": worker})


def test_cart_abandonment_through_the_worker_with_consent(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topics = Topics.from_settings(kafka_settings)
    receiver = Receiver(SECRET).start()
    settings = settings_for(kafka_settings, tmp_path, receiver.url)
    alerts = AlertLog(bootstrap, topics.alerts)
    produce(
        bootstrap,
        topics.raw_events,
        [
            *cart("dev-ada", "ada", T0, "ada"),
            *cart("dev-bob", "bob", T0, "bob", withdraw=True),
            raw("clock-1", "dev-zed", T0 + timedelta(hours=3)),  # moves event time past the windows
        ],
    )
    worker = start_worker_process(settings, tmp_path / "worker.log")
    try:
        alerts.wait_until(
            lambda r: len(r) >= 2 and len(receiver.requests) >= 1, worker, timeout=120, settle=3
        )
    finally:
        stop(worker)
        receiver.stop()
        alerts.consumer.close()
    assert alerts.of("ada") == [("cart_abandonment", "fired", None)]
    assert alerts.of("bob") == [("cart_abandonment", "suppressed", "consent_missing")]  # recorded
    assert alerts.of("dev-zed") == []
    [ada] = [r for r in alerts.records if r["customer_id"] == "ada"]
    assert ada["message"] == "ada left ada-p in the cart"
    assert ada["reasons"][-1] == {"condition": "no 'Order Completed' within 3600s", "actual": "0"}
    [delivered] = receiver.requests  # only fired alerts go to webhooks
    assert delivered.verified and delivered.alert_id == ada["alert_id"]
    assert delivered.body["customer_id"] == "ada" and delivered.body["channel"] == "email"


def start_triggers_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`webhouse triggers run` (the agents in their own faust App) as a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    out = open(log, "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "triggers", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def produce_enriched(
    bootstrap: str, topics: Topics, events: list[dict[str, Any]], sessions: list[dict[str, Any]]
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for e in events:
        producer.produce(topics.enriched_events, EVENTS.encode(e), key=e["anonymous_id"].encode())
    for s in sessions:
        producer.produce(topics.sessions, SESSIONS.encode(s), key=s["anonymous_id"].encode())
    # What the worker writes after what it released: every enriched and sessions partition has got
    # this far (just past the latest event).
    latest = max(ms(e["enrichment"]["event_time"]) for e in events) + 1
    progress = Progress(SourceState.ACTIVE, latest).to_bytes()
    for partition in range(topics.partitions):
        for topic in (topics.enriched_events, topics.sessions):
            producer.produce(topic, progress, partition=partition, headers=list(watermark_headers()))
    assert producer.flush(30) == 0


def test_restart_emits_no_duplicate_and_keeps_state(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    """The trigger App alone, fed enriched events and sessions; stopped, restarted, input replayed."""
    bootstrap = kafka_settings.bootstrap_servers
    topics = Topics.from_settings(kafka_settings)
    receiver = Receiver(SECRET).start()
    broken = Receiver(SECRET, fail_first=10**6).start()  # always 503: its copy is dead-lettered
    settings = settings_for(kafka_settings, tmp_path, receiver.url, broken.url, webhook_max_attempts=2)
    alerts = AlertLog(bootstrap, topics.alerts)
    dead = AlertLog(bootstrap, topics.dead_letters, DEAD)
    first_events = [consent(at(0), customer="ada", anon="dev-ada", message_id="ada-consent")]
    first_sessions = [
        session(at(0), at(5), customer="ada", anon="dev-ada", added=["p-1"], session_id="s-ada-1")
    ]
    clock = [
        event("Page Viewed", at(0, hours=3), customer=None, anon="dev-zed", call="page", message_id="zed-1")
    ]
    produce_enriched(bootstrap, topics, first_events + clock, first_sessions)
    process = start_triggers_process(settings, tmp_path / "triggers.log")
    try:
        alerts.wait_until(
            lambda r: len(r) >= 1 and len(receiver.requests) >= 1, process, timeout=120, settle=2
        )
        dead.wait_until(lambda r: len(r) >= 1, process, timeout=60)
        stop(process)
        process = start_triggers_process(settings, tmp_path / "triggers2.log")
        # the same input again (a producer retry or an upstream replay), then a new cart the same day
        later = [
            session(
                at(0, hours=4),
                at(5, hours=4),
                customer="ada",
                anon="dev-ada",
                added=["p-2"],
                session_id="s-ada-2",
            )
        ]
        clock2 = [
            event(
                "Page Viewed", at(0, hours=8), customer=None, anon="dev-zed", call="page", message_id="zed-2"
            )
        ]
        produce_enriched(bootstrap, topics, first_events + clock + clock2, first_sessions + later)
        alerts.wait_until(lambda r: len(r) >= 2, process, timeout=120, settle=4)
    finally:
        stop(process)
        receiver.stop()
        broken.stop()
        alerts.consumer.close()
        dead.consumer.close()
    ids = [r["alert_id"] for r in alerts.records]
    assert len(ids) == len(set(ids)), "an alert was emitted twice"
    assert alerts.of("ada") == [
        ("cart_abandonment", "fired", None),
        ("cart_abandonment", "suppressed", "cooldown"),  # the restored state remembers the first
    ]
    assert [r.alert_id for r in receiver.requests] == [ids[0]]
    [letter] = [d for d in dead.records if d["stage"] == "delivery"]
    assert (letter["reason"], letter["headers"]["url"]) == ("webhook_http_503", broken.url)
    assert letter["headers"]["alert_id"] == ids[0]
    assert broken.attempts == 2  # max attempts, then the dead-letter topic; nothing after
