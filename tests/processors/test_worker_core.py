"""The worker without Kafka: the worker stage on the in-memory runtime over given batches, and the codec."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest

from pipeline.event_view import VIEW_HEADER
from pipeline.runtime.control import Progress, SourceState, end_headers, is_control
from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.stage import Record, Step
from pipeline.serde import SingleObjectSerde, schema_fingerprint
from pipeline.settings import SessionPolicySettings, Settings, WorkerSettings
from pipeline.topics import Topics
from processors.enrichment import Enricher
from processors.worker.codec import EventCodec
from processors.worker.core import BatchResult, WorkerCore
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import DEVICES, WorkerStage, to_step
from tests.processors.sessioned import visits_of
from tests.processors.worker_support import GOOGLEBOT, raw_event

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EVENTS = SingleObjectSerde("customer_event")
SESSIONS = SingleObjectSerde("session")
LINKS = SingleObjectSerde("identity_link")
DEAD = SingleObjectSerde("dead_letter")
END_HEADERS = end_headers()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def at_ms(seconds: float) -> int:
    return int(at(seconds).timestamp() * 1000)


def settings() -> Settings:
    policy = SessionPolicySettings(inactivity_gap_s=60, allowed_lateness_s=10)
    return Settings(worker=WorkerSettings(session=policy))


END = object()  # in ``Harness.feed``: an end-of-input record (``webhouse kafka end-of-input``)


class Harness:
    """The worker stage on the in-memory runtime (``pipeline.runtime.memory``), two partitions: raw
    records in, in the batches a test gives; every output kept; ``restarted`` is the runtime's
    restart from the changelogs, ``quiet`` the stage's timer once nothing is left to read, ``sweep``
    an end of input."""

    def __init__(
        self,
        config: Settings | None = None,
        runner: MemoryRunner | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.settings = config or settings()
        self.topics = Topics.from_settings(self.settings.kafka)
        if runner is None:
            metrics = WorkerMetrics()  # one set for every restart of the stage

            def make() -> WorkerStage:
                return WorkerStage(self.settings, metrics)

            runner = MemoryRunner(make, MemoryBroker(2), "worker", state_dir=state_dir)
        self.runner = runner
        self.outputs: list[Record] = []

    @property
    def core(self) -> WorkerCore:
        return cast(WorkerStage, self.runner.stage).core

    @property
    def devices(self) -> dict[bytes, bytes]:
        """The ``devices`` store as the runtime keeps it (what a restart reads back)."""
        return dict(self.runner.stores[DEVICES])

    def feed(self, *records: dict[str, Any] | bytes | object, partition: int = 0) -> Step:
        """One batch of these raw records (appended to the raw topic) on ``partition``."""
        for record in records:
            if record is END:
                self.runner.broker.append(Record(self.topics.raw_events, None, b"", partition, END_HEADERS))
                continue
            value = record if isinstance(record, bytes) else EVENTS.encode(cast(dict[str, Any], record))
            self.runner.broker.append(Record(self.topics.raw_events, b"k", value, partition))
        return self._keep(
            self.runner.process(self.runner.take(self.topics.raw_events, partition, len(records)))
        )

    def expire(self, ttl_ms: int, visitless_ttl_ms: int | None = None) -> BatchResult:
        """The stage's expiry with this TTL, its tombstones committed."""
        result = self.core.expire(ttl_ms, visitless_ttl_ms)
        self.runner.apply(to_step(result))
        return result

    def redeliver(self, offset: int, count: int, partition: int = 0) -> Step:
        """Raw records read again from ``offset`` (the consumer's last commit was older)."""
        self.runner.committed[(self.topics.raw_events, partition)] = offset
        return self._keep(self.runner.process(self.runner.take(self.topics.raw_events, partition, count)))

    def quiet(self) -> Step:
        """The stage's timer once nothing is left to read (no wall time passes in memory)."""
        return self._keep(self.runner.tick())

    def sweep(self) -> Step:
        """An end of input on every partition fed so far: all released, every visit closed."""
        step = Step()
        fed = {p for topic, p in self.runner.committed if topic == self.topics.raw_events}
        for partition in sorted(fed or {0}):
            step.extend(self.feed(END, partition=partition))
        return step

    def _keep(self, step: Step) -> Step:
        self.outputs.extend(step.outputs)
        return step

    def restarted(self) -> Harness:
        """The stage rebuilt from its changelogs, as after a crash; the twin keeps its own outputs."""
        self.runner.restart()
        return Harness(self.settings, self.runner)

    def decoded(self, kind: str) -> list[dict[str, Any]]:
        serde = {"enriched": EVENTS, "sessions": SESSIONS, "identity": LINKS, "deadletter": DEAD}[kind]
        return [
            serde.decode(o.value or b"")
            for o in self.outputs
            if o.topic.endswith(kind) and not is_control(o.headers)
        ]

    def progress(self, partition: int = 0) -> list[Progress]:
        """The watermark records sent to the enriched partition, in order."""
        return [
            Progress.from_bytes(o.value or b"")
            for o in self.outputs
            if is_control(o.headers) and o.partition == partition and o.topic.endswith("enriched")
        ]

    def sessions_of(self) -> dict[str, str | None]:
        """Every enriched event's visit (None: late, no visit, or its visit still open)."""
        return visits_of(self.decoded("enriched"), self.decoded("sessions"))


def visit(prefix: str, device: str, start: float, count: int, step: float = 10) -> list[dict[str, Any]]:
    return [raw_event(f"{prefix}{i}", device, at(start + i * step)) for i in range(count)]


def test_events_go_on_at_once_and_their_visit_is_found_when_it_closes() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 3))
    # Events at 0, 10, 20 s: all three are on the enriched topic at once, with their session key
    # and no session id; the visit is still open.
    enriched = h.decoded("enriched")
    assert [r["message_id"] for r in enriched] == ["a0", "a1", "a2"]
    assert {(r["enrichment"]["session_key"], r["enrichment"]["session_id"]) for r in enriched} == {
        ("dev-a", None)
    }
    assert h.sessions_of() == dict.fromkeys(["a0", "a1", "a2"])
    h.feed(raw_event("b0", "dev-b", at(200)))  # another device moves the partition's watermark
    first = h.sessions_of()
    assert set(first) == {"a0", "a1", "a2", "b0"} and first["b0"] is None
    assert len({first[m] for m in ("a0", "a1", "a2")} - {None}) == 1
    (session,) = h.decoded("sessions")
    assert (session["event_count"], session["closed_by"], session["anonymous_id"]) == (
        3,
        "inactivity",
        "dev-a",
    )
    h.sweep()
    assert h.decoded("sessions")[-1]["closed_by"] == "idle_sweep"
    assert None not in h.sessions_of().values()
    assert len(h.decoded("enriched")) == 4  # each event once: none again when its visit closed


def test_a_late_event_is_kept_flagged_and_counted() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 2), raw_event("far", "dev-a", at(500)))
    h.feed(raw_event("late", "dev-a", at(30)))  # 470 s behind; allowed lateness is 10 s
    late = next(r for r in h.decoded("enriched") if r["message_id"] == "late")
    assert late["enrichment"]["is_late"] and late["enrichment"]["session_id"] is None
    assert h.core.metrics.late._value.get() == 1


def test_bots_and_idless_events_pass_straight_through() -> None:
    h = Harness()
    bot = raw_event("bot", "crawler", at(0), context={"user_agent": GOOGLEBOT})
    junk = raw_event("junk", "undefined", at(0))  # a blocklisted anonymous id is nobody's device
    h.feed(bot, junk)
    enriched = {r["message_id"]: r["enrichment"] for r in h.decoded("enriched")}
    assert enriched["bot"]["is_bot"] and enriched["bot"]["session_id"] is None
    assert enriched["junk"]["session_id"] is None and not enriched["junk"]["is_late"]
    assert list(h.devices) == [b"crawler"]  # the crawler's duplicate memory; junk has no key at all
    h.sweep()
    assert h.decoded("sessions") == [] and h.decoded("deadletter") == []


def test_a_retried_event_that_joins_no_visit_goes_on_once_also_after_a_restart() -> None:
    """A client's retry (same message id) of a crawler's page view or of a CRM sync's identify
    call: the worker passes such events on at once, and dropped nothing of them before, so with the
    sink's id-dedupe off they landed twice (the chaos test's --no-dedupe run: 77 bot page views)."""
    h = Harness()
    bot = raw_event("bot-1", "crawler", at(0), context={"user_agent": GOOGLEBOT})
    crm = raw_event("crm-1", None, at(1), type="identify", user_id="cust-9", channel="server")
    h.feed(bot, crm)
    h.feed(bot, crm)  # the retries, in a later batch
    twin = h.restarted()
    twin.feed(bot, crm)  # and once more after a crash: the memory came back from the changelog
    ids = [r["message_id"] for r in h.decoded("enriched") + twin.decoded("enriched")]
    assert sorted(ids) == ["bot-1", "crm-1"]
    assert h.core.metrics.events.labels("duplicate")._value.get() == 4


def test_keys_only_seen_without_a_visit_expire_sooner() -> None:
    h = Harness()
    day_ms = 24 * 3600 * 1000
    h.feed(
        raw_event("bot-1", "crawler", at(0), context={"user_agent": GOOGLEBOT}), *visit("a", "dev-a", 0, 2)
    )
    h.feed(raw_event("b0", "dev-b", at(2 * 24 * 3600)))  # two days on; dev-a's visit closed
    expired = h.expire(ttl_ms=30 * day_ms, visitless_ttl_ms=day_ms)
    assert expired.erased == {b"crawler": 0}  # dev-a (a visitor) stays for the 30 days


def test_identity_links_are_keyed_by_both_ids_on_the_device_partition() -> None:
    h = Harness()
    h.feed(raw_event("s", "dev-a", at(0), type="track", event="Signed In", user_id="ada"), partition=1)
    (link,) = [o for o in h.outputs if o.topic.endswith("identity")]
    assert json.loads(cast(bytes, link.key)) == ["dev-a", "ada"] and link.partition == 1
    h.feed(raw_event("p", "dev-a", at(5)), partition=1)
    h.sweep()
    assert {r["enrichment"]["customer_id"] for r in h.decoded("enriched")} == {"ada"}
    assert h.decoded("sessions")[0]["customer_id"] == "ada"


def test_undecodable_and_failing_events_become_dead_letters_and_the_batch_goes_on() -> None:
    h = Harness()
    h.feed(b"\x00\x01garbage", raw_event("ok", "dev-a", at(1)))
    (dead,) = h.decoded("deadletter")
    assert (dead["stage"], dead["reason"], dead["payload"], dead["source_offset"]) == (
        "worker", "undecodable", b"\x00\x01garbage", 0)  # fmt: skip
    h.core.enricher = _Exploding()
    h.feed(raw_event("boom", "dev-a", at(2)))
    reasons = [d["reason"] for d in h.decoded("deadletter")]
    assert reasons == ["undecodable", "RuntimeError"]
    assert h.decoded("deadletter")[-1]["message_id"] == "boom"
    assert h.core.metrics.dead_letters.labels("RuntimeError")._value.get() == 1


class _Exploding(Enricher):
    def enrich(self, event: Any) -> dict[str, Any]:
        raise RuntimeError("enrichment bug")


def test_a_restart_from_the_tables_gives_the_same_outputs() -> None:
    stream = visit("a", "dev-a", 0, 5) + visit("b", "dev-b", 20, 4) + visit("c", "dev-a", 400, 3)
    stream += [raw_event("z", "dev-z", at(1000))]
    straight = Harness()
    for event in stream:
        straight.feed(event)
    straight.sweep()

    first = Harness()
    for event in stream[:6]:
        first.feed(event)
    second = first.restarted()
    second.redeliver(4, 2)  # Kafka redelivers from an older committed offset: already in the state
    second.feed(stream[5])  # and a producer retry: the same event again at a new offset
    for event in stream[6:]:
        second.feed(event)
    second.sweep()
    combined = first.decoded("sessions") + second.decoded("sessions")
    assert {s["session_id"]: s for s in combined} == {
        s["session_id"]: s for s in straight.decoded("sessions")
    }
    crashed = visits_of(
        first.decoded("enriched") + second.decoded("enriched"),
        first.decoded("sessions") + second.decoded("sessions"),
    )
    assert crashed == straight.sessions_of()
    assert len(first.decoded("enriched") + second.decoded("enriched")) == len(straight.decoded("enriched"))
    assert second.core.metrics.events.labels("replayed")._value.get() == 2
    assert second.core.metrics.events.labels("duplicate")._value.get() == 1


def _full_encode(record: dict[str, Any], enrichment: dict[str, Any]) -> bytes:
    return EVENTS.encode({**record, "enrichment": enrichment})


@pytest.mark.parametrize("user_id", [None, "cust-é", "x" * 200])
def test_spliced_enriched_bytes_equal_a_full_encode(user_id: str | None) -> None:
    codec = EventCodec()
    value = EVENTS.encode(raw_event("m", "dev", at(0), user_id=user_id))
    record = codec.decode(value)
    enrichment = Enricher().enrich(record)
    assert codec.enriched(value, record, enrichment) == _full_encode(record, enrichment)
    pending = codec.pending(value, record, enrichment)
    for session_id, late in [("s-1", False), (None, True), ("é" * 70, False)]:
        expected = _full_encode(record, {**enrichment, "session_id": session_id, "is_late": late})
        assert codec.finish(pending, session_id, late) == expected


def test_an_older_writer_schema_is_re_encoded_in_full(repo_root: Path) -> None:
    old = json.loads((repo_root / "schemas/history/customer_event/v1.avsc").read_text())
    old_serde = SingleObjectSerde("customer_event")
    parsed = fastavro.parse_schema(old)
    header = b"\xc3\x01" + schema_fingerprint(old)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, raw_event("m", "dev", at(0)), strict_allow_default=True)
    value = header + buf.getvalue()
    codec = EventCodec()
    record = codec.decode(value)
    enrichment = Enricher().enrich(record)
    assert not codec.can_splice(value, record)
    out = old_serde.decode(codec.finish(codec.pending(value, record, enrichment), "s-9"))
    assert out["enrichment"]["session_id"] == "s-9" and out["message_id"] == "m"


def test_worker_help_documents_the_session_policy(capsys: pytest.CaptureFixture[str]) -> None:
    from tools.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--help"])
    text = capsys.readouterr().out
    for phrase in ("30 min without events", "24 h", "campaign", "5 min out of order", "watermark",
                   "idle_close_interval_s", "WEBHOUSE_WORKER__SESSION__"):  # fmt: skip
        assert phrase in text


def test_progress_follows_what_was_released_then_end() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 3))
    lateness = settings().worker.session.allowed_lateness_s * 1000
    assert h.progress() == [Progress(SourceState.ACTIVE, at_ms(20) - lateness)]
    assert len(h.decoded("enriched")) == 3  # on their way at once
    device = h.core.devices["dev-a"]  # but the later two still wait for their visit
    assert device.session is not None and device.session.buffer
    h.quiet()  # caught up and quiet: everything released into the visit at once, which stays open
    device = h.core.devices["dev-a"]
    assert device.session is not None and not device.session.buffer and h.decoded("sessions") == []
    assert len(h.decoded("enriched")) == 3
    assert h.progress()[-1].state is SourceState.ACTIVE  # an open visit: not idle, its close is to come
    h.feed(END)
    assert h.progress()[-1] == Progress(SourceState.ENDED, at_ms(20))
    assert len(h.progress()) == 2  # nothing said twice
    assert not h.decoded("deadletter")  # the control record is not an event


def test_a_progress_report_of_an_aborted_batch_is_sent_again_when_the_batch_is_redone() -> None:
    """The runtime redoes an aborted batch after ``assign`` (its rewind); the reports that batch
    made were discarded with it, so the worker must not remember them as sent. Remembered, the end
    of input never reached downstream and every stage after the worker waited for it forever."""
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 3))
    stage, stores = cast(WorkerStage, h.runner.stage), h.runner.stores
    end = h.runner.broker.append(Record(h.topics.raw_events, None, b"", 0, END_HEADERS))

    def reports() -> list[Progress]:
        outputs = stage.process([end], stores, at(100)).outputs
        reported = [o for o in outputs if is_control(o.headers) and o.topic.endswith("enriched")]
        return [Progress.from_bytes(o.value or b"") for o in reported]

    assert reports() == [Progress(SourceState.ENDED, at_ms(20))]  # the attempt, aborted
    owned = stage.owned
    stage.assign(frozenset(), stores)  # the rewind: state back to the last commit
    stage.assign(owned, stores)
    assert reports() == [Progress(SourceState.ENDED, at_ms(20))]


def test_an_end_of_input_read_in_the_batch_of_the_last_events_stays_the_last_word() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 3), END)  # one batch
    assert h.progress()[-1].state is SourceState.ENDED
    assert len(h.decoded("enriched")) == 3  # everything released before the end is passed on


def test_a_visit_the_watermark_ended_closes_by_inactivity_whatever_batch_the_end_comes_in() -> None:
    """A restart changes how records fall into batches; the closing rule must not follow them."""
    rules = []
    for batches in ([[*visit("a", "dev-a", 0, 2), raw_event("b0", "dev-b", at(200)), END]],
                    [[*visit("a", "dev-a", 0, 2), raw_event("b0", "dev-b", at(200))], [END]]):  # fmt: skip
        h = Harness()
        for batch in cast(list[list[object]], batches):  # records and END
            h.feed(*batch)
        rules.append({s["anonymous_id"]: s["closed_by"] for s in h.decoded("sessions")})
    assert rules[0] == rules[1] == {"dev-a": "inactivity", "dev-b": "idle_sweep"}


def test_idle_devices_expire_from_the_state_and_come_back_afresh() -> None:
    """State stays bounded: a device idle for the TTL (in its partition's event time) is dropped."""
    h = Harness()
    day = 24 * 3600
    h.feed(*visit("a", "dev-a", 0, 2), raw_event("s", "dev-a", at(30), type="track", event="Signed In",
                                                 user_id="ada"))  # fmt: skip
    h.feed(raw_event("b0", "dev-b", at(2 * day)))  # dev-a's visit closes; dev-b is new
    assert h.expire(ttl_ms=3 * day * 1000).erased == {}  # two days idle: kept
    h.feed(raw_event("b1", "dev-b", at(4 * day)))
    expired = h.expire(ttl_ms=3 * day * 1000)
    assert expired.erased == {b"dev-a": 0}  # four days idle, no open visit: gone; dev-b holds a visit
    assert "dev-a" not in h.core.devices and "dev-b" in h.core.devices
    assert list(h.core._customers(0).devices("ada")) == []
    h.feed(raw_event("a9", "dev-a", at(4 * day + 60)))  # back: a new device as far as the worker knows
    h.sweep()
    assert h.sessions_of()["a9"] not in {h.sessions_of()["a0"], None}
    [a9] = [r for r in h.decoded("enriched") if r["message_id"] == "a9"]
    assert a9["enrichment"]["customer_id"] is None  # no stitching until it signs in again


def test_a_visit_of_endless_products_keeps_its_records_within_what_kafka_takes() -> None:
    """A crawler taken for a browser views 60,000 distinct products in one visit (an hour, 60 list
    events of 1,000). Listed whole, the open visit in the device's record and then the visit
    record passed the largest record Kafka takes (1,000,000 bytes): the step failed, and the same
    step again after each restart, so the worker stalled. A visit lists the first 1,000."""
    harness = Harness()
    products = [[{"product_id": f"sku-{n:06d}-{i:04d}"} for i in range(1000)] for n in range(60)]
    for n, listed in enumerate(products):
        harness.feed(
            raw_event(
                f"pv-{n}",
                "crawler",
                at(n * 50),
                type="track",
                event="Product Viewed",
                commerce={"products": listed},
            )
        )
    harness.sweep()
    [visit] = harness.decoded("sessions")
    assert visit["event_count"] == 60
    assert visit["products_viewed"] == [p["product_id"] for p in products[0]]


def test_a_device_shared_by_thousands_of_customers_stays_a_record_kafka_takes() -> None:
    """A server sending one anonymous id with every user's identify: each new customer was one
    more link in the device's record, and at about 7,500 the record passed the largest Kafka
    takes (1,000,000 bytes) and the worker stalled on that step. The device links 100
    (``worker.identity_customer_limit``), reports itself once, and each event keeps its user id."""
    harness = Harness()
    users = [f"user-{i:05d}" for i in range(8000)]
    for start in range(0, len(users), 2000):
        harness.feed(
            *[
                raw_event(
                    f"identify-{i:05d}-from-the-shared-device",
                    "kiosk",
                    at(i),
                    type="identify",
                    user_id=users[i],
                )
                for i in range(start, start + 2000)
            ]
        )
    links = harness.decoded("identity")
    assert [link["customer_id"] for link in links] == users[:100]
    [dead] = harness.decoded("deadletter")
    assert (dead["reason"], json.loads(dead["detail"])["rule"]) == ("identity_rejected", "customer_limit")
    customers = [event["enrichment"]["customer_id"] for event in harness.decoded("enriched")]
    assert customers == users
    assert len(harness.devices[b"kiosk"]) < 20_000
    # The triggers see the refused events as their users' without the device, so they hand it over
    # to nobody (a view with both would move the device's state to each user in turn).
    enriched = [o for o in harness.outputs if o.topic.endswith("enriched") and not is_control(o.headers)]
    views = [json.loads(dict(o.headers)[VIEW_HEADER]) for o in enriched]
    assert [v.get("anonymous_id") for v in views] == ["kiosk"] * 100 + [None] * 7900
    assert [v["customer_id"] for v in views] == users


def test_an_undecodable_input_as_large_as_kafka_takes_is_dead_lettered_cut() -> None:
    """A raw record near the largest Kafka takes, that is no event: its dead letter with the
    input whole was larger than that, its produce failed, and the worker stopped on it."""
    harness = Harness()
    junk = b"\x00" * 999_990
    harness.feed(junk)
    [dead] = harness.decoded("deadletter")
    assert dead["reason"] == "event_too_large" and dead["payload"] == junk[: len(dead["payload"])]
    assert len(dead["payload"]) < len(junk) and dead["headers"]["payload_bytes"] == "999990"


def test_an_event_too_large_for_its_enriched_record_is_dead_lettered_and_one_below_goes_on() -> None:
    """The collector takes events up to 32 KB, but a touchpoint may write to the raw topic itself.
    A 600 KB event went on as an enriched record with its view in the headers, twice its size and
    more than Kafka takes: the worker stopped on it. Past 256 KiB an event is a dead letter now."""
    harness = Harness()
    big = raw_event("big", "dev-1", at(0), properties={"blob": "x" * 600_000})
    fits = raw_event("fits", "dev-1", at(1), properties={"blob": "x" * 200_000})
    harness.feed(big, fits)
    [dead] = harness.decoded("deadletter")
    assert (dead["reason"], dead["message_id"]) == ("event_too_large", None)
    assert [event["message_id"] for event in harness.decoded("enriched")] == ["fits"]
