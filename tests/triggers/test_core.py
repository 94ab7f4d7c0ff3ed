"""TriggerCore without Kafka: route -> evaluate (with hand-over and absorb) -> sweep, in memory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import cast

from pipeline.runtime.clock import StageClock
from pipeline.runtime.control import Progress, SourceState, watermark_headers
from pipeline.runtime.stage import Record
from pipeline.runtime.store import DiskStore, StateStore
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, Settings, TriggerSettings
from tools.local_pipeline import LocalPipeline
from triggers.core import STATE_BYTES_MAX, Incoming, Marks, TriggerCore
from triggers.hold import RECORD_BYTES
from triggers.metrics import TriggerMetrics
from triggers.stages import PENDING, STATES, EvaluateStage, RouteStage
from triggers.state import CustomerState

from .builders import at, consent, event, ms, order, session

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
EVENTS = SingleObjectSerde("customer_event")
SESSIONS = SingleObjectSerde("session")
ALERTS = SingleObjectSerde("alert")
PROFILES = SingleObjectSerde("profile")
DEAD = SingleObjectSerde("dead_letter")
LINKS = SingleObjectSerde("identity_link")


HEADERS = watermark_headers()


def moved(bus: Bus) -> dict[bytes, str | None]:
    """Keys whose state is a forwarding marker, and to whom; fails if a customer key is missing."""
    states = {k: CustomerState.from_dict(json.loads(v)) for k, v in bus.table.items()}
    assert all(s.moved_to is None or s.moved_to.encode() in states for s in states.values())
    return {k: s.moved_to for k, s in states.items() if s.moved_to is not None}


def identity_link(anon: str, customer: str, when: datetime) -> dict:
    """The worker's record that a device signed in as a customer (an identify call)."""
    return {"anonymous_id": anon, "customer_id": customer, "first_seen": when, "last_seen": when,
            "source_event_id": "m-identify", "source_type": "identify"}  # fmt: skip


def link_device(bus: Bus) -> None:
    """dev-4 views a product, then signs in as c-4 (an identity link alone); read past it."""
    bus.event(event("Product Viewed", at(1), customer=None, anon="dev-4", products=["p-1"]))
    bus.raw(bus.topics.identity, LINKS.encode(identity_link("dev-4", "c-4", at(2))))
    bus.sweep(ms(at(3)))


def at_watermark(now: int) -> dict[int, Marks]:
    """Both triggers partitions' marks at ``now``."""
    return {p: Marks(now, now, now) for p in (0, 1)}


class Bus:
    """Route and evaluate on the in-memory runtime (``tools.local_pipeline``). Inputs go to partition
    0 of their topic; the stages' clock moves only by ``sweep`` (a progress report on every enriched
    partition), so nothing closes before a test says so."""

    def __init__(self, partitions: int = 1, triggers: TriggerSettings | None = None) -> None:
        settings = Settings(kafka=KafkaSettings(topic_prefix="t"), triggers=triggers or TriggerSettings())
        self.local = LocalPipeline(settings, worker=False, partitions=partitions)
        self.topics = self.local.topics
        self.clock = -1

    @property
    def core(self) -> TriggerCore:
        """The evaluate stage's core (its due index, its metrics, shared with route's)."""
        return cast(EvaluateStage, self.local.evaluate.stage).core

    @property
    def table(self) -> StateStore | DiskStore:
        """The evaluate stage's ``trigger-states`` store, as the runtime keeps it."""
        return self.local.evaluate.stores[STATES]

    @property
    def log(self) -> dict[str, list[Incoming]]:
        broker = self.local.broker
        return {topic: broker.records(topic) for topic in broker.logs}

    def raw(self, topic: str, value: bytes) -> None:
        self.local.broker.append(Record(topic, b"k", value, 0))
        self.local.run()

    def event(self, record: dict, *, follow: bool = True) -> None:
        """An enriched event; ``follow``: then the clock moves just past it (never back), as the
        worker's would with no lateness, so the evaluate stage (which holds inputs until the clock
        has passed them) applies it."""
        self.raw(self.topics.enriched_events, EVENTS.encode(record))
        if follow:
            self.sweep(ms(record["enrichment"]["event_time"]) + 1)

    def session(self, record: dict, *, follow: bool = True) -> None:
        """A closed visit; ``follow``: then the clock moves past its boundary (end plus the gap)."""
        self.raw(self.topics.sessions, SESSIONS.encode(record))
        if follow:
            gap_ms = self.local.settings.worker.session.inactivity_gap_s * 1000
            self.sweep(ms(record["end"]) + gap_ms + 1)

    def sweep(self, now: int) -> None:
        """The clock moves to ``now`` (never back: an earlier ``now`` only runs the stages)."""
        if now > self.clock:
            self.local.advance(now)
            self.clock = now
        self.local.run()

    def alerts(self) -> list[dict]:
        return [ALERTS.decode(o.value) for o in self.log.get(self.topics.alerts, [])]

    def profiles(self) -> list[dict]:
        return [PROFILES.decode(o.value) for o in self.log.get(self.topics.profiles, [])]


def test_anonymous_cart_then_login_alerts_the_customer_and_merges_the_profile() -> None:
    bus = Bus()
    bus.event(event("Product Added", at(1), customer=None, anon="dev-1", products=["p-1"]))
    bus.session(session(at(0), at(5), customer=None, anon="dev-1", added=["p-1"], session_id="s-1"))
    bus.sweep(ms(at(36)))  # past the visit's boundary (its end plus the 30-minute gap): applied
    assert set(bus.table) == {b"dev-1"}
    bus.event(consent(at(20), customer="c-1", anon="dev-1"))  # logs in, grants consent
    assert moved(bus) == {b"dev-1": "c-1"}  # the device's state moved to the customer
    bus.sweep(ms(at(0, hours=2)))
    [alert] = bus.alerts()
    assert (alert["rule_id"], alert["customer_id"], alert["status"]) == ("cart_abandonment", "c-1", "fired")
    assert alert["triggering_event_ids"] == ["s-1"]
    merged = [p for p in bus.profiles() if p["merged_into"]]
    assert [(p["customer_id"], p["merged_into"]) for p in merged] == [("dev-1", "c-1")]
    latest = bus.profiles()[-1]
    assert (latest["customer_id"], latest["sessions"], latest["event_count"]) == ("c-1", 1, 2)
    assert latest["consent"] == {"marketing_email": True}
    bus.sweep(ms(at(0, hours=3)))
    assert len(bus.alerts()) == 1


def test_a_window_on_the_partition_whose_clock_moves_second_still_closes() -> None:
    bus = Bus(partitions=2)
    bus.event(event("Product Added", at(1), customer=None, anon="dev-1", products=["p-1"]))
    bus.session(session(at(0), at(5), customer=None, anon="dev-1", added=["p-1"], session_id="s-1"))
    bus.event(consent(at(20), customer="c-1", anon="dev-1"))
    bus.sweep(ms(at(0, hours=2)))
    assert [(a["rule_id"], a["customer_id"]) for a in bus.alerts()] == [("cart_abandonment", "c-1")]


def test_profile_versions_are_numbered_per_customer_and_identify_the_version() -> None:
    """(customer_id, version) is the row id of ``profiles_history``: unique, the highest the latest."""
    bus = Bus()
    bus.event(event("Product Added", at(1), customer=None, anon="dev-1", products=["p-1"]))
    bus.session(session(at(0), at(5), customer=None, anon="dev-1", added=["p-1"], session_id="s-1"))
    bus.event(consent(at(20), customer="c-1", anon="dev-1"))
    bus.event(event("Page Viewed", at(30), customer="c-1", anon="dev-1", call="page"))
    bus.sweep(ms(at(36)))
    numbers: dict[str, list[int]] = {}
    for profile in bus.profiles():
        numbers.setdefault(profile["customer_id"], []).append(profile["version"])
    assert all(found == list(range(1, len(found) + 1)) for found in numbers.values()), numbers
    assert set(numbers) == {"dev-1", "c-1"} and len(numbers["c-1"]) >= 2


def test_undecodable_input_becomes_a_dead_letter() -> None:
    bus = Bus()
    bus.raw(bus.topics.enriched_events, b"not avro")
    [dead] = [DEAD.decode(o.value or b"") for o in bus.log[bus.topics.dead_letters]]
    assert (dead["stage"], dead["reason"], dead["payload"]) == ("triggers", "undecodable", b"not avro")
    assert dead["source_topic"] == bus.topics.enriched_events


def test_sweep_writes_only_changed_states() -> None:
    bus = Bus()
    bus.event(event("Page Viewed", at(0), call="page"))
    bus.sweep(ms(at(1)))
    result = bus.core.sweep(bus.table, at_watermark(ms(at(10))))
    assert result.states == {} and result.outputs == []
    assert bus.core.sweep(bus.table, {}).states == {}


def test_sweep_visits_only_the_states_due() -> None:
    bus = Bus()
    bus.event(consent(at(0)))
    bus.event(consent(at(0), customer="c-2", anon="a-2"))
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))
    bus.sweep(ms(at(36)))  # the first sweep is a full pass; nothing due yet
    assert bus.core.due[b"c-1"].window == ms(at(5 + 60 + 1))  # deadline plus the 60 s grace
    assert bus.core.due[b"c-2"].hour == ms(at(0, hours=1))  # changed: the rules look at 10:00
    bus.sweep(ms(at(0, hours=1)) + 1)  # just past 10:00: both visited at the hour; nothing due yet
    assert bus.alerts() == []
    # Seen, without an order: churn risk (orders >= 1) cannot fire before an input, so the next
    # hour due is the state's expiry, not the next day (triggers.wake).
    ttl_ms = bus.core.settings.triggers.state_ttl_days * 86_400_000
    expiry = (ms(at(0)) + ttl_ms) // 3_600_000 * 3_600_000 + 3_600_000
    assert bus.core.due[b"c-2"].hour == expiry
    bus.table.put(0, b"c-2", b"not json")  # reading it would raise: c-2 is not due until then
    bus.sweep(ms(at(7, hours=1)))  # 10:07: only c-1's window
    assert [(a["rule_id"], a["customer_id"]) for a in bus.alerts()] == [("cart_abandonment", "c-1")]
    assert all(due.window is None for due in bus.core.due.values())
    bus.sweep(ms(at(0, hours=5)))  # 14:00: hours without anything to decide visit nobody
    assert bus.core.due[b"c-2"].hour == expiry


def test_a_sweep_step_decides_at_most_sweep_chunk_due_states_the_earliest_first() -> None:
    bus = Bus(triggers=TriggerSettings(sweep_chunk=2))
    for i in (3, 0, 4, 1, 2):  # five carts left a minute apart; their windows close in that order
        customer, anon = f"c-{i}", f"a-{i}"
        bus.event(consent(at(0), customer=customer, anon=anon))
        bus.session(
            session(at(i), at(5 + i), customer=customer, anon=anon, added=["p-1"], session_id=f"s-{i}")
        )
    assert bus.alerts() == []
    mark = ms(at(80))  # past every window: all five due at once
    steps = [bus.core.sweep(bus.table, {0: Marks(mark, mark, mark)}) for _ in range(4)]
    decided = [[(a.rule_id, a.customer_id) for a in step.alerts] for step in steps]
    assert decided == [
        [("cart_abandonment", "c-0"), ("cart_abandonment", "c-1")],
        [("cart_abandonment", "c-2"), ("cart_abandonment", "c-3")],
        [("cart_abandonment", "c-4")],
        [],
    ]


def test_metrics_count_alerts_by_rule_status_reason_and_dead_letters() -> None:
    bus = Bus()
    metrics = bus.core.metrics
    bus.raw(bus.topics.sessions, b"\x00junk")
    bus.event(
        order(at(1)), follow=False
    )  # no consent: two suppressed marketing alerts, decided at the watermark
    assert bus.alerts() == []
    bus.sweep(ms(at(2)))  # the evaluate stage counts what it decided (its clock: now)
    value = metrics.registry.get_sample_value
    labels = {"rule": "first_purchase_welcome", "status": "suppressed", "reason": "consent_missing"}
    assert value("webhouse_trigger_alerts_total", labels) == 1.0
    assert value("webhouse_trigger_dead_letters_total", {"stage": "triggers", "reason": "undecodable"}) == 1.0
    assert value("webhouse_trigger_inputs_total", {"kind": "event"}) == 1.0
    latency = TriggerMetrics()  # the latency of an alert produced 2.5 s after its time
    produced_at = at(1).timestamp() + 2.5
    from triggers.alerts import Alert

    for record in bus.alerts():
        latency.alert(Alert.from_record(record), produced_at)
    assert latency.registry.get_sample_value("webhouse_trigger_latency_seconds_sum",
                                             {"rule": "first_purchase_welcome"}) == 2.5  # fmt: skip


def test_an_undeliverable_alert_becomes_a_delivery_dead_letter_per_receiver() -> None:
    bus = Bus()
    first = bus.core.delivery_dead_letter(b'{"alert_id":"a1"}', "a1", "http://x/hook", "http_503", NOW)
    again = bus.core.delivery_dead_letter(b'{"alert_id":"a1"}', "a1", "http://x/hook", "http_503", NOW)
    other = bus.core.delivery_dead_letter(b'{"alert_id":"a1"}', "a1", "http://y/hook", "http_503", NOW)
    dead = DEAD.decode(first.value or b"")
    assert (dead["stage"], dead["reason"], dead["payload"]) == (
        "delivery",
        "webhook_http_503",
        b'{"alert_id":"a1"}',
    )
    assert dead["headers"]["url"] == "http://x/hook" and dead["headers"]["alert_id"] == "a1"
    assert first.topic == bus.topics.dead_letters
    assert first.key == again.key != other.key  # replay-stable, one per receiver


def test_an_identity_link_alone_moves_the_device_state_to_the_customer() -> None:
    bus = Bus()
    link_device(bus)
    assert moved(bus) == {b"dev-4": "c-4"}
    link = LINKS.encode(identity_link("dev-4", "c-4", at(2)))
    bus.raw(bus.topics.identity, link)  # the compacted topic re-read: nothing to move
    assert moved(bus) == {b"dev-4": "c-4"}


def test_a_forwarding_marker_expires_counted_from_its_link() -> None:
    """A device handed over leaves a marker under its key, so that late inputs follow it to the
    customer; it is dropped at the first hour ``triggers.state_ttl_days`` after the link (with no
    partition of its own it was never visited by the sweep, and every device ever linked stayed)."""
    bus = Bus(triggers=TriggerSettings(state_ttl_days=30))
    link_device(bus)
    assert moved(bus) == {b"dev-4": "c-4"}
    bus.event(event("Page Viewed", at(0, days=29), customer="c-4", anon="dev-5", call="page"))
    bus.sweep(ms(at(3, days=30)))
    assert moved(bus) == {b"dev-4": "c-4", b"dev-5": "c-4"}
    bus.sweep(ms(at(3, days=30, hours=1)))  # the first hour 30 days after the link
    assert moved(bus) == {b"dev-5": "c-4"}  # linked on day 29: stays


def test_a_marker_stored_without_its_partition_expires_after_a_full_pass() -> None:
    """Markers written before they kept their partition: the full pass after an assignment finds
    theirs, and indexes them for their expiry."""
    bus = Bus(triggers=TriggerSettings(state_ttl_days=30))
    link_device(bus)
    old = {**json.loads(bus.table[b"dev-4"]), "partition": None}
    bus.table.put(0, b"dev-4", json.dumps(old).encode())
    bus.core.reset_index()  # as after an assignment
    bus.sweep(ms(at(3, days=30)))
    assert moved(bus) == {b"dev-4": "c-4"}
    bus.sweep(ms(at(3, days=30, hours=1)))
    assert moved(bus) == {}


def test_a_later_input_does_not_close_a_window_only_the_watermark_does() -> None:
    bus = Bus()
    bus.event(consent(at(0)))
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))
    # Hours later in event time, read from another partition: says nothing of what is unread.
    bus.event(event("Page Viewed", at(0, hours=5), call="page"), follow=False)
    assert bus.alerts() == []
    bus.sweep(ms(at(0, hours=2)))
    assert [a["rule_id"] for a in bus.alerts()] == ["cart_abandonment"]


def test_progress_records_reach_every_triggers_partition_after_the_inputs() -> None:
    bus = Bus()
    record = EVENTS.encode(consent(at(0)))
    progress = Progress(SourceState.ACTIVE, ms(at(30)))
    batch = [
        Incoming(bus.topics.enriched_events, 1, 1, b"c-1", record),
        Incoming(bus.topics.enriched_events, 1, 2, None, progress.to_bytes(), None, watermark_headers()),
    ]
    routed = bus.core.route(batch, NOW).outputs
    n = bus.topics.partitions
    # The inputs first (by key), then one report per triggers partition.
    assert [o.partition for o in routed[-n:]] == list(range(n)) and routed[-n - 1].key == b"c-1"
    assert all(o.partition is None for o in routed[:-n])
    report = Incoming(bus.topics.triggers_input, 0, 1, None, routed[-n].value or b"")
    result = bus.core.evaluate([report], NOW)
    assert result.progress == {0: [(f"{bus.topics.enriched_events}/1", progress)]}
    clock = StageClock.from_bytes(None, bus.core.clock_sources())
    for source, reported in result.progress[0]:
        clock.report(source, reported)
    assert clock.watermark is None  # partition 0 of the enriched topic has not spoken yet


def test_consent_is_judged_as_it_stood_at_the_alerts_time_whatever_was_read_since() -> None:
    bus = Bus()  # c-1 withdraws before its cart's hour is up; c-2 only after: the order read differs
    bus.event(consent(at(0)))
    bus.event(consent(at(0), customer="c-2", anon="a-2"))
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))
    bus.session(session(at(0), at(5), customer="c-2", anon="a-2", added=["p-1"], session_id="s-2"))
    bus.event(consent(at(30, hours=0), granted=False, message_id="w-1"))
    bus.event(consent(at(0, hours=2), customer="c-2", anon="a-2", granted=False, message_id="w-2"))
    bus.sweep(ms(at(0, hours=3)))
    outcome = {(a["customer_id"], a["status"], a["suppression_reason"]) for a in bus.alerts()}
    assert outcome == {("c-1", "suppressed", "consent_missing"), ("c-2", "fired", None)}


def test_a_session_read_after_the_sign_in_follows_the_device_to_its_customer() -> None:
    """The cart visit closed before the sign-in, but its session record is read after the sign-in
    event (two topics, no common order): it must join the customer, whose order then answers it."""
    bus = Bus()
    bus.event(event("Product Added", at(1), customer=None, anon="dev-7", products=["p-1"]))
    bus.event(consent(at(0, hours=0), customer="c-7", anon="dev-7"))  # signs in: state moves to c-7
    bus.session(session(at(0), at(5), customer=None, anon="dev-7", added=["p-1"], session_id="s-7"))
    bus.event(order(at(30), customer="c-7", anon="dev-7"))
    bus.sweep(ms(at(0, hours=3)))
    assert [a["rule_id"] for a in bus.alerts() if a["rule_id"] == "cart_abandonment"] == []
    assert moved(bus) == {b"dev-7": "c-7"}
    customer = CustomerState.from_dict(json.loads(bus.table[b"c-7"]))
    assert customer.profile.sessions == 1 and customer.profile.orders == 1


def test_an_order_outlives_a_flood_of_views_for_a_window_that_opens_late() -> None:
    bus = Bus()
    bus.event(consent(at(0)))
    bus.event(order(at(30)))
    for i in range(400):  # more views than history_max_events (300) before the session is read
        bus.event(event("Product Viewed", at(60 + i), products=[f"p-{i}"]))
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))
    bus.sweep(ms(at(0, hours=3)))
    assert [a["rule_id"] for a in bus.alerts() if a["rule_id"] == "cart_abandonment"] == []


def test_a_cart_due_before_its_device_is_linked_is_decided_on_the_device_in_either_order() -> None:
    """Linked two hours after the visit: the hour had passed, so the device alone decides
    (no consent: suppressed), whether the sweep or the hand-over is read first."""
    outcomes = []
    for sweep_first in (True, False):
        bus = Bus()
        bus.event(consent(at(0), customer="c-8", anon="other-device"))
        bus.event(event("Product Added", at(1), customer=None, anon="dev-8", products=["p-1"]))
        bus.session(session(at(0), at(5), customer=None, anon="dev-8", added=["p-1"], session_id="s-8"))
        if sweep_first:
            bus.sweep(ms(at(0, hours=1)) + 120_000)
        bus.event(event("Page Viewed", at(0, hours=2), customer="c-8", anon="dev-8", call="page"))
        bus.sweep(ms(at(0, hours=3)))
        carts = [a for a in bus.alerts() if a["rule_id"] == "cart_abandonment"]
        outcomes.append([(a["customer_id"], a["status"], a["suppression_reason"]) for a in carts])
    assert outcomes[0] == outcomes[1] == [("dev-8", "suppressed", "consent_missing")]


def test_a_pre_link_session_read_after_the_hand_over_is_judged_as_the_device() -> None:
    """The hand-over (link two hours after the visit) is read before the visit's session: the cart's
    hour had passed before the link, so the device alone decides, as when read in time order."""
    bus = Bus()
    bus.event(consent(at(0), customer="c-9", anon="other-device"))
    bus.event(event("Product Added", at(1), customer=None, anon="dev-9", products=["p-1"]))
    bus.event(event("Page Viewed", at(0, hours=2), customer="c-9", anon="dev-9", call="page"))
    bus.session(session(at(0), at(5), customer=None, anon="dev-9", added=["p-1"], session_id="s-9"))
    bus.sweep(ms(at(0, hours=3)))
    carts = [a for a in bus.alerts() if a["rule_id"] == "cart_abandonment"]
    assert [(a["customer_id"], a["status"], a["suppression_reason"]) for a in carts] == [
        ("dev-9", "suppressed", "consent_missing")
    ]
    customer = CustomerState.from_dict(json.loads(bus.table[b"c-9"]))
    assert customer.profile.sessions == 1  # the session still counts for the customer


def test_an_order_read_before_a_much_later_input_still_answers_a_late_window() -> None:
    bus = Bus()
    bus.event(consent(at(0)))
    bus.event(order(at(30)))
    bus.event(event("Page Viewed", at(0, hours=24 * 20), call="page"))  # 20 days later, read first
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))
    bus.sweep(ms(at(0, hours=24 * 20)))
    assert [a["rule_id"] for a in bus.alerts() if a["rule_id"] == "cart_abandonment"] == []


def test_a_marketing_alert_waits_for_a_withdrawal_read_later_from_another_partition() -> None:
    bus = Bus()
    bus.event(consent(at(0)))
    bus.event(order(at(60)), follow=False)  # first purchase: welcome and cross-sell are marketing alerts
    bus.event(consent(at(30), granted=False, message_id="w-1"), follow=False)  # withdrawn before, read after
    bus.sweep(ms(at(120)))
    outcome = {(a["rule_id"], a["status"], a["suppression_reason"]) for a in bus.alerts()}
    assert outcome and all(status == "suppressed" for _, status, _ in outcome)


def test_a_user_id_the_worker_refused_does_not_key_a_profile() -> None:
    from pipeline.event_view import event_view

    record = event("Product Added", at(1), customer=None, anon="dev-u", products=["p-1"])
    record["user_id"] = "undefined"  # the worker's identity guards left enrichment.customer_id empty
    view = event_view(record)
    assert view is not None and view.customer_id == "dev-u"


def test_a_window_read_weeks_of_event_time_late_still_finds_its_order() -> None:
    """A replay can read a session (or a device's state) long after the order that answers it: a
    sweep at a watermark weeks ahead must not have dropped the order meanwhile."""
    bus = Bus()
    bus.event(consent(at(0)))
    bus.event(order(at(30)))
    bus.event(event("Page Viewed", at(0, days=20), call="page"))
    bus.sweep(ms(at(0, days=20)))  # a full pass far ahead of the order
    bus.session(session(at(0), at(5), added=["p-1"], session_id="s-1"))
    bus.sweep(ms(at(0, days=21)))
    assert [a["rule_id"] for a in bus.alerts() if a["rule_id"] == "cart_abandonment"] == []


def test_a_handover_of_a_rewound_batch_is_routed_again_and_a_repeat_changes_nothing() -> None:
    """The runtime rewinds an aborted batch through ``assign``: the route stage must not remember
    the hand-over that batch sent (its output was discarded), or the device's state never moves.
    Sending it once more is harmless: the evaluate stage finds the device already moved."""
    bus = Bus()
    route = cast(RouteStage, bus.local.runners[-2].stage)
    bus.event(event("Product Viewed", at(1), customer=None, anon="dev-5", products=["p-1"]))
    signed_in = event("Signed In", at(2), customer="c-5", anon="dev-5")
    incoming = Incoming(bus.topics.enriched_events, 0, 99, b"k", EVENTS.encode(signed_in))

    def handovers() -> list[bytes | None]:
        outputs = route.process([incoming], {}, NOW).outputs
        return [o.key for o in outputs if json.loads(o.value or b"{}").get("kind") == "handover"]

    assert handovers() == [b"dev-5"]
    assert handovers() == []  # remembered: not repeated
    route.assign(frozenset(), {})  # what the runtime does before redoing an aborted batch
    assert handovers() == [b"dev-5"]

    route.assign(frozenset(), {})  # the outputs above were never sent: forget them again
    bus.event(signed_in)
    before = dict(bus.table)
    assert moved(bus) == {b"dev-5": "c-5"}
    route.assign(frozenset(), {})
    bus.event(signed_in)  # the same input again (as after a rebalance): its hand-over repeated
    assert moved(bus) == {b"dev-5": "c-5"}
    assert dict(bus.table) == before


def test_a_step_of_large_held_inputs_is_stored_in_records_kafka_takes() -> None:
    """A step reads up to ``worker.batch_max_events`` inputs. Held in one record, 400 events of
    4 KB passed the largest record Kafka takes (1,000,000 bytes): the step failed, and failed
    again after each restart. Now they go to several records, and every input is applied."""
    bus = Bus()
    route, evaluate = bus.local.runners
    count = 400
    for i in range(count):
        record = event("Page Viewed", at(i), call="page")
        record["properties"] = {"note": "x" * 4000}
        bus.local.enriched(record)
    route.process(route.take(bus.topics.enriched_events, 0, count))
    evaluate.process(evaluate.take(bus.topics.triggers_input, 0, count))
    stored = dict(evaluate.stores[PENDING].items())
    assert len(stored) > 1
    assert all(len(value) <= RECORD_BYTES for value in stored.values())
    evaluate.restart()
    bus.sweep(ms(at(count)))
    assert bus.local.states()["c-1"].profile.event_count == count


def test_a_state_of_many_large_past_events_gives_up_its_oldest_to_stay_a_record_kafka_takes() -> None:
    """300 Product Viewed events of 250 products each (a list page tracked as a product view):
    the customer's history made a state of over 1 MB, past the largest record Kafka takes, and the
    evaluate stage stopped on it. Now the oldest past events go first, until it fits."""
    bus = Bus()
    for n in range(300):
        listed = [f"sku-{n:03d}-{i:03d}" for i in range(250)]
        bus.event(event("Product Viewed", at(n), products=listed))
    stored = bus.table.get(b"c-1")
    assert stored is not None and len(stored) <= STATE_BYTES_MAX
    state = CustomerState.from_dict(json.loads(stored))
    assert state.profile.event_count == 300
    assert 0 < len(state.history) < 300 and state.history[-1].product_ids[0] == "sku-299-000"


def stored_state(bus: Bus, key: bytes) -> CustomerState:
    stored = bus.table.get(key)
    assert stored is not None and len(stored) <= STATE_BYTES_MAX
    return CustomerState.from_dict(json.loads(stored))


def test_a_profile_of_many_long_categories_keeps_the_most_bought_to_stay_a_record_kafka_takes() -> None:
    """A category is a name as long as the event allows, and a profile counted every one it ever
    saw: 500 orders of a distinct 2 KB category made a state past the largest record Kafka
    takes, and the evaluate stage stopped on it. Now the least bought go first, until it fits."""
    bus = Bus()
    for n in range(1_000):
        category = "favourite" if n % 2 else f"cat-{n:04d}-" + "x" * 2_000
        bus.event(order(at(n), category=category))
    state = stored_state(bus, b"c-1")
    assert state.profile.orders == 1_000
    assert state.profile.categories_bought["favourite"] == 500
    assert 1 < len(state.profile.categories_bought) < 501


def test_a_profile_of_long_product_ids_keeps_the_latest_to_stay_a_record_kafka_takes() -> None:
    """The last 100 products bought, each id as long as the event allows (here 11 KB): past the
    largest record Kafka takes. Now the oldest go first, until it fits."""
    bus = Bus()
    for n in range(100):
        bus.event(order(at(n), products=[f"p-{n:03d}-" + "x" * 11_000]))
    state = stored_state(bus, b"c-1")
    assert state.profile.orders == 100
    assert 0 < len(state.profile.products_bought) < 100
    assert state.profile.products_bought[-1].startswith("p-099-")


def test_a_profile_of_many_long_anonymous_ids_keeps_the_latest_to_stay_a_record_kafka_takes() -> None:
    """Every device a customer ever used stays in the profile's anonymous ids: 500 devices of
    2 KB ids (a client that puts a token in the anonymous id) passed the largest record Kafka
    takes. Now the oldest go first, until it fits."""
    bus = Bus()
    for n in range(500):
        bus.event(event("Page Viewed", at(n), anon=f"d-{n:03d}-" + "x" * 2_000, call="page"))
    state = stored_state(bus, b"c-1")
    assert state.profile.event_count == 500
    assert 0 < len(state.profile.anonymous_ids) < 500
    assert state.profile.anonymous_ids[-1].startswith("d-499-")


def test_a_device_state_grown_within_one_batch_is_handed_over_trimmed() -> None:
    """A device's state is trimmed when stored, but its hand-over to the customer carried it as
    the batch left it: 300 large Product Viewed events and the sign-in applied in one step made
    an ``absorb`` input past the largest record Kafka takes. Now it carries the trimmed state."""
    bus = Bus()
    for n in range(300):
        listed = [f"sku-{n:03d}-{i:03d}" for i in range(250)]
        record = event("Product Viewed", at(n), customer=None, anon="dev-1", products=listed)
        bus.event(record, follow=False)
    bus.event(event("Signed In", at(300), customer="c-1", anon="dev-1"), follow=False)
    bus.sweep(ms(at(301)))  # every input applied in one step of the evaluate stage
    assert moved(bus) == {b"dev-1": "c-1"}
    state = stored_state(bus, b"c-1")
    assert state.profile.event_count == 301


def test_a_profile_grown_within_one_batch_is_published_trimmed() -> None:
    """The state is trimmed when a step stores it, but the profile is published as each input
    leaves it: 500 orders of a distinct 2 KB category applied in one step published a profile
    past the largest record Kafka takes. Now a profile past the state's bound is published trimmed."""
    bus = Bus()
    for n in range(500):
        bus.event(order(at(n), category=f"cat-{n:04d}-" + "x" * 2_000), follow=False)
    bus.sweep(ms(at(501)))  # every input applied in one step of the evaluate stage
    assert stored_state(bus, b"c-1").profile.orders == 500
    latest = bus.profiles()[-1]
    assert latest["orders"] == 500 and 0 < len(latest["categories_bought"]) < 500


def test_a_profile_of_many_long_consent_purposes_keeps_those_rules_may_read() -> None:
    """A consent purpose is a name as long as the event allows, and a profile kept each one it
    saw: 500 consent events of a distinct 2 KB purpose passed the largest record Kafka takes. Now
    the purposes outside ``triggers.consent_purposes`` (which no rule may name; the analysts'
    consent view reads the events) go when the state passes its bound; those inside never do."""
    bus = Bus()
    bus.event(consent(at(0)))  # marketing_email granted
    for n in range(1, 501):
        purpose = f"purpose-{n:03d}-" + "x" * 2_000
        bus.event(event("Consent Granted", at(n), channel="server", purposes=[purpose]))
    state = stored_state(bus, b"c-1")
    assert state.profile.event_count == 501
    assert state.profile.consent["marketing_email"] is True and len(state.profile.consent) < 501
    assert state.consent_at("marketing_email", ms(at(600))) is True


def test_a_state_of_many_long_order_ids_forgets_the_oldest_to_stay_a_record_kafka_takes() -> None:
    """A state remembers its last 1,000 order ids against a client's retry, each as long as the
    event allows: 500 orders with 2 KB ids passed the largest record Kafka takes. Now the oldest
    ids go, after the history and the profile's lists, until it fits."""
    bus = Bus()
    for n in range(500):
        bus.event(order(at(n), order_id=f"o-{n:03d}-" + "x" * 2_000, products=[]))
    state = stored_state(bus, b"c-1")
    assert state.profile.orders == 500
    assert 0 < len(state.order_ids) < 500 and state.order_ids[-1].startswith("o-499-")
