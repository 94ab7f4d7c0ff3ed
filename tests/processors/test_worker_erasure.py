"""The worker honours erasures: a forgotten customer's devices are dropped with everything they
held, replays and late events from before the erasure rebuild nothing, and a new event after it
starts from nothing (pipeline/erasure.py, WorkerCore.apply_erasure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from pipeline.erasure import Erasure
from pipeline.runtime.control import is_control
from pipeline.runtime.stage import Record, Step
from processors.worker.stage import DEVICES
from tests.processors.test_worker_core import EVENTS, Harness, at, visit
from tests.processors.worker_support import raw_event


@dataclass
class Erased:
    outputs: list[Record]
    erased: dict[bytes, int]  # device key -> partition, tombstoned in the devices store


class ErasingHarness(Harness):
    """Also forgets customers: an erasure record on the erasures topic, which the runtime hands
    to the stage before anything else (``on_broadcast``)."""

    def erase(self, customer_id: str, *devices: str, seconds: float) -> Erased:
        """The erasure applied; its outputs and the device records it tombstoned."""
        erasure = Erasure(customer_id, devices, at(seconds))
        self.runner.broker.append(Record(self.topics.erasures, customer_id.encode(), erasure.to_bytes()))
        step = self._keep(self.runner.apply_broadcasts())
        erased = {w.key: w.partition for w in step.writes if w.store == DEVICES and w.value is None}
        return Erased(step.outputs, erased)

    def replay(self, *records: dict[str, Any], partition: int = 0) -> Step:
        """The same raw messages read again at new offsets (a replay of the raw topic)."""
        return self.feed(*records, partition=partition)


def signed_in(mid: str, device: str, customer: str, seconds: float) -> dict[str, Any]:
    return raw_event(mid, device, at(seconds), type="track", event="Signed In", user_id=customer)


def test_forgetting_drops_the_devices_and_their_open_visit_without_emitting_it() -> None:
    h = ErasingHarness()
    old = [signed_in("s", "dev-a", "ada", 0), *visit("a", "dev-a", 10, 3), *visit("b", "dev-b", 12, 2)]
    h.feed(*old)
    assert b"dev-a" in h.devices and b"dev-b" in h.devices
    released_before = set(h.sessions_of())

    result = h.erase("ada", "dev-a", seconds=100)

    assert result.erased == {b"dev-a": 0} and result.outputs == []
    assert b"dev-a" not in h.devices and b"dev-b" in h.devices  # nobody else's device
    h.sweep()
    closed = h.decoded("sessions")
    assert [s["anonymous_id"] for s in closed] == ["dev-b"]  # ada's open visit never comes out
    released_after = set(h.sessions_of()) - released_before
    assert released_after == {"b0", "b1"} - released_before  # ada's waiting events stay unsaid


def test_a_replay_of_the_raw_topic_rebuilds_nothing_of_the_forgotten_customer() -> None:
    h = ErasingHarness()
    old = [signed_in("s", "dev-a", "ada", 0), *visit("a", "dev-a", 10, 3)]
    h.feed(*old)
    h.erase("ada", "dev-a", seconds=100)
    emitted = len(h.outputs)

    h.replay(*old)
    h.sweep()

    new = h.outputs[emitted:]
    assert [
        o for o in new if not is_control(o.headers)
    ] == []  # no enriched event, session, link or dead letter
    assert h.devices == {}
    assert h.core.metrics.events.labels("erased")._value.get() == 4


def test_a_late_event_from_before_the_erasure_is_dropped_even_when_received_after() -> None:
    h = ErasingHarness()
    h.feed(signed_in("s", "dev-a", "ada", 0))
    h.erase("ada", "dev-a", seconds=100)
    # A phone's queue flushed after the forget: received at 200 s, happened at 50 s.
    late_by_device = raw_event("q", "dev-a", at(50), received_at=at(200), sent_at=at(200))
    # A server call naming only the customer, from before the forget.
    late_by_user = raw_event("u", None, at(60), type="track", event="Order Completed", user_id="ada",
                             received_at=at(200), sent_at=at(200))  # fmt: skip
    emitted = len(h.outputs)
    h.feed(late_by_device, late_by_user)
    h.sweep()
    assert [o for o in h.outputs[emitted:] if not is_control(o.headers)] == []
    assert h.devices == {}


def test_a_device_linked_here_but_not_named_in_the_record_goes_too() -> None:
    h = ErasingHarness()
    h.feed(signed_in("s1", "dev-a", "ada", 0), signed_in("s2", "dev-c", "ada", 5))
    result = h.erase("ada", "dev-a", seconds=100)  # the record predates dev-c's link
    assert set(result.erased) == {b"dev-a", b"dev-c"}
    emitted = len(h.outputs)
    h.replay(raw_event("c1", "dev-c", at(20)))
    assert [o for o in h.outputs[emitted:] if not is_control(o.headers)] == []


def test_a_new_event_after_the_erasure_starts_a_fresh_device_and_link() -> None:
    h = ErasingHarness()
    old = [signed_in("s", "dev-a", "ada", 0), *visit("a", "dev-a", 10, 3)]
    h.feed(*old)
    h.erase("ada", "dev-a", seconds=100)
    emitted = len(h.outputs)

    h.feed(signed_in("back", "dev-a", "ada", 200), raw_event("p", "dev-a", at(210)))
    h.replay(*old)  # and the old events once more, after the new ones
    h.sweep()

    new = h.outputs[emitted:]
    links = [o for o in new if o.topic.endswith("identity")]
    assert len(links) == 1  # ada's link starts again, from the new sign-in
    enriched = [
        EVENTS.decode(cast(bytes, o.value))
        for o in new
        if o.topic.endswith("enriched") and not is_control(o.headers)
    ]
    assert {r["message_id"] for r in enriched} == {"back", "p"}
    sessions = [o for o in new if o.topic.endswith("sessions") and not is_control(o.headers)]
    assert len(sessions) == 1
    session = h.decoded("sessions")[-1]
    assert (session["event_count"], session["first_event_id"], session["customer_id"]) == (2, "back", "ada")
