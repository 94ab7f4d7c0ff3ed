"""The real worker (a child process running `webhouse worker`) against the real broker."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.runtime.control import send_end_of_input
from pipeline.settings import KafkaSettings, MetricsSettings
from pipeline.topics import Topics
from processors.sessions.events import SessionEvent
from processors.sessions.policy import SessionPolicy, to_ms
from processors.sessions.reference import sessionize_batch
from processors.worker.runner import start_worker_process
from tests.conftest import free_port
from tests.processors.sessioned import visits_of
from tests.processors.worker_support import (
    CHROME,
    GOOGLEBOT,
    T0,
    Outputs,
    message_count,
    produce,
    raw_event,
    simulated,
    worker_settings,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_worker_enriches_stitches_and_closes_sessions(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    settings = worker_settings(kafka_settings, tmp_path)
    metrics_port = free_port()
    settings = settings.model_copy(update={"metrics": MetricsSettings(port=metrics_port)})
    topics = Topics.from_settings(kafka_settings)
    at = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    campaign_page = {
        "url": "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring&gclid=x",
        "referrer": "https://mail.google.com/",
    }
    bot_context = {"user_agent": GOOGLEBOT, "page": {"url": "https://shop.example/"}}
    events = [
        (0, raw_event("a1", "dev-a", at(0), context={"page": campaign_page, "user_agent": CHROME})),
        (0, raw_event("a2", "dev-a", at(20), type="track", event="Signed In", user_id="ada")),
        (0, raw_event("a3", "dev-a", at(40))),
        (0, raw_event("a4", "dev-a", at(400))),  # > 60 s gap: closes visit 1 by inactivity
        (1, raw_event("b1", "dev-b", at(10), type="identify", user_id="bob")),
        (1, raw_event("b2", "dev-b", at(15))),
        (1, raw_event("bot1", "crawler", at(12), context=bot_context)),
        (1, raw_event("s1", None, at(13), type="track", event="Order Completed", user_id="carl",
                      channel="server", context={})),
    ]  # fmt: skip
    produce(kafka_settings.bootstrap_servers, topics.raw_events, events, extra=[(1, b"not avro at all")])
    send_end_of_input(kafka_settings.bootstrap_servers, topics.raw_events)  # the open visits close at once
    outputs = Outputs(kafka_settings.bootstrap_servers, topics)
    worker = start_worker_process(settings, tmp_path / "worker.log")
    try:
        outputs.wait_until(
            lambda o: len(o.enriched_ids()) == 8 and len(o.records["sessions"]) >= 4 and o.records["dead"],
            timeout=90,
            settle=1.5,
        )
        scraped = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        )
    finally:
        stop(worker)
        outputs.close()
    _check_enriched(outputs)
    _check_sessions_and_links(outputs)
    _check_metrics(scraped, Topics.from_settings(settings.kafka).raw_events)
    (dead,) = outputs.records["dead"]
    assert (dead["stage"], dead["reason"], dead["payload"]) == ("worker", "undecodable", b"not avro at all")


def _check_enriched(outputs: Outputs) -> None:
    """Campaign, referrer and device of the first visit; customers stitched; the bot apart."""
    enriched = {r["message_id"]: r for r in outputs.records["enriched"]}
    a1 = enriched["a1"]["enrichment"]
    assert (a1["utm_campaign"], a1["referrer_class"], a1["url_query"], a1["device_class"]) == (
        "spring", "email", None, "desktop")  # fmt: skip
    assert a1["customer_id"] is None and enriched["a3"]["enrichment"]["customer_id"] == "ada"
    assert enriched["b2"]["enrichment"]["customer_id"] == "bob"
    bot = enriched["bot1"]["enrichment"]
    assert bot["is_bot"] and bot["session_id"] is None
    assert enriched["s1"]["enrichment"]["customer_id"] == "carl"
    assert {r["enrichment"]["session_id"] for r in enriched.values()} == {None}  # found by key, time, id
    assert (enriched["s1"]["enrichment"]["session_key"], bot["session_key"]) == ("carl", None)
    # Co-partitioned: every output of a device is on its raw partition.
    assert {r["_partition"] for r in outputs.records["enriched"] if r["anonymous_id"] == "dev-b"} == {1}


def _check_sessions_and_links(outputs: Outputs) -> None:
    """The visits as cut (inactivity, the end of input), the server-side customer's own, the links."""
    enriched = {r["message_id"]: r for r in outputs.records["enriched"]}
    session_of = visits_of(enriched.values(), outputs.records["sessions"])
    assert session_of["a1"] == session_of["a2"] == session_of["a3"] != session_of["a4"]
    sessions = {s["session_id"]: s for s in outputs.records["sessions"]}
    first = sessions[session_of["a1"]]
    assert (first["event_count"], first["closed_by"], first["customer_id"]) == (3, "inactivity", "ada")
    assert (first["utm_campaign"], first["referrer_class"]) == ("spring", "email")
    assert sessions[session_of["a4"]]["closed_by"] == "idle_sweep"  # closed by the end of input
    assert sessions[session_of["b1"]]["event_count"] == 2
    carl = sessions[session_of["s1"]]  # user id only, no device of carl's open: carl's own visit
    assert (carl["anonymous_id"], carl["customer_id"], carl["converted"]) == ("carl", "carl", True)
    assert all(s["anonymous_id"] != "crawler" for s in sessions.values())
    links = {(r["anonymous_id"], r["customer_id"]): r for r in outputs.records["identity"]}
    assert links[("dev-a", "ada")]["source_type"] == "signed_in"
    assert links[("dev-b", "bob")]["source_type"] == "identify"
    assert {r["_partition"] for r in outputs.records["identity"] if r["anonymous_id"] == "dev-a"} == {0}


def _check_metrics(scraped: str, raw: str) -> None:
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics['webhouse_worker_events_total{outcome="sessionized"}'] == 7
    assert metrics['webhouse_worker_events_total{outcome="bot"}'] == 1
    assert metrics['webhouse_worker_dead_letters_total{reason="undecodable"}'] == 1
    assert metrics['webhouse_worker_sessions_closed_total{rule="inactivity"}'] >= 1
    assert metrics[f'webhouse_stage_consumer_lag{{partition="0",stage="worker",topic="{raw}"}}'] == 0
    assert metrics['webhouse_stage_transactions_total{outcome="committed",stage="worker"}'] >= 1
    assert metrics["webhouse_worker_processing_latency_seconds_count"] > 0
    assert "webhouse_worker_open_devices" in metrics and "webhouse_worker_late_events_total" in metrics


def _run_to_completion(settings: Any, expected_events: int, log: Path, kill_after: int | None) -> Outputs:
    topics = Topics.from_settings(settings.kafka)
    outputs = Outputs(settings.kafka.bootstrap_servers, topics)
    worker = start_worker_process(settings, log)
    try:
        if kill_after is not None:
            outputs.wait_until(lambda o: len(o.enriched_ids()) >= kill_after, timeout=120)
            stop(worker, signal.SIGKILL)
            outputs.poll(1.0)
            assert len(outputs.enriched_ids()) < expected_events, "the kill came too late to test anything"
            worker = start_worker_process(settings, log)
        # Every event on the enriched topic, and (no event of this stream is late) every one in a
        # closed visit: the end of input closes the last ones.
        outputs.wait_until(
            lambda o: (
                len(o.enriched_ids()) == expected_events
                and sum(s["event_count"] for s in o.records["sessions"]) >= expected_events
            ),
            timeout=150,
            settle=4.0,
        )
    finally:
        stop(worker)
        outputs.close()
    return outputs


def _sessions(outputs: Outputs) -> dict[str, dict[str, Any]]:
    return {
        s["session_id"]: {k: v for k, v in s.items() if k != "_partition"}
        for s in outputs.records["sessions"]
    }


def _assignments(outputs: Outputs) -> dict[str, tuple[Any, ...]]:
    visits = visits_of(outputs.records["enriched"], outputs.records["sessions"])
    return {
        r["message_id"]: (
            visits[r["message_id"]],
            r["enrichment"]["session_key"],
            r["enrichment"]["customer_id"],
            r["enrichment"]["is_late"],
        )
        for r in outputs.records["enriched"]
    }


def test_sigkill_mid_stream_loses_nothing(
    kafka_settings: KafkaSettings, tmp_path: Path, topics_factory: Any
) -> None:
    events = simulated(devices=40, per_device=100)
    total = len(events)
    # Uninterrupted run on its own topics.
    # Small batches, so the kill lands mid-stream rather than after one big batch.
    clean = worker_settings(kafka_settings, tmp_path / "clean", batch=50)
    produce(kafka_settings.bootstrap_servers, Topics.from_settings(clean.kafka).raw_events, events)
    # Exactly the events, once each (a producer retry duplicating one would be a different test).
    assert (
        message_count(kafka_settings.bootstrap_servers, Topics.from_settings(clean.kafka).raw_events) == total
    )
    send_end_of_input(kafka_settings.bootstrap_servers, Topics.from_settings(clean.kafka).raw_events)
    baseline = _run_to_completion(clean, total, tmp_path / "clean.log", kill_after=None)
    # Same events, same policy, fresh topics; SIGKILL once a third has come out.
    other = topics_factory(partitions=2)
    killed_kafka = kafka_settings.model_copy(update={"topic_prefix": other.prefix})
    # Five decoded devices at most: the others are read back from the disk store, which the
    # restarted worker resumes from its saved changelog offsets.
    killed = worker_settings(killed_kafka, tmp_path / "killed", batch=50, device_cache=5)
    produce(kafka_settings.bootstrap_servers, other.raw_events, events)
    assert message_count(kafka_settings.bootstrap_servers, other.raw_events) == total
    send_end_of_input(kafka_settings.bootstrap_servers, other.raw_events)  # the last visits close at once
    restarted = _run_to_completion(killed, total, tmp_path / "killed.log", kill_after=total // 4)

    assert _assignments(restarted) == _assignments(baseline)
    assert _sessions(restarted) == _sessions(baseline)
    assert sum(s["event_count"] for s in _sessions(baseline).values()) == total
    # Exactly once on the output topics (outputs, state and offsets commit in one transaction):
    # the readers below take committed records only, and none may repeat.
    assert len(restarted.records["enriched"]) == total
    assert len(restarted.enriched_ids()) == total
    assert len(restarted.records["sessions"]) == len(baseline.records["sessions"])

    # And the sessions are exactly the batch reference's, per partition and its final watermark.
    policy = SessionPolicy.from_settings(clean.worker.session)
    for partition in (0, 1):
        part = [e for p, e in events if p == partition]
        wm = max(to_ms(e["received_at"]) for e in part) - policy.allowed_lateness_ms
        reference = sessionize_batch(
            [SessionEvent(e["message_id"], e["anonymous_id"], e["received_at"], page=f"/{e['message_id']}",
                          call_type=e["type"], is_page_view=e["type"] == "page", channel="web",
                          customer_id=None) for e in part],
            policy,
            final_watermark_ms=wm,
        )  # fmt: skip
        got = {
            sid
            for sid, s in _sessions(baseline).items()
            if s["anonymous_id"] in {e["anonymous_id"] for e in part}
        }
        assert got == {s.session_id for s in reference.sessions}


def test_the_worker_refuses_topics_that_are_not_co_partitioned(kafka_bootstrap: str) -> None:
    from pipeline.errors import SettingsError
    from pipeline.kafka_admin import ensure_topics
    from processors.worker.runner import check_copartitioned

    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}", partitions=2)
    specs = [s if s.name != topics.raw_events else replace(s, partitions=3) for s in topics.specs()]
    ensure_topics(kafka_bootstrap, specs)
    with pytest.raises(SettingsError, match="co-partitioned"):
        check_copartitioned(kafka_bootstrap, topics)
    check_copartitioned(kafka_bootstrap, replace(topics, prefix=topics.prefix + "x"))  # none exist: fine
