"""Events waiting for the watermark are saved one record each (``processors.worker.waiting``):
written once when they arrive, tombstoned when released, never inside the device record; a restart
puts them back into their devices, so the visits come out as an uninterrupted run's."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pipeline.runtime.stage import Step
from processors.enrichment import Enricher
from processors.sessions.state import DeviceState, event_to_list
from processors.worker.codec import EventCodec
from processors.worker.devices import Device, record_body
from processors.worker.stage import DEVICES, WAITING
from processors.worker.waiting import encode_waiting, waiting_key
from tests.processors.sessioned import visits_of
from tests.processors.test_worker_core import EVENTS, Harness, at, visit
from tests.processors.worker_support import raw_event


def _writes(step: Step, store: str) -> dict[bytes, bytes | None]:
    return {w.key: w.value for w in step.writes if w.store == store}


def test_each_batch_writes_only_its_new_waiting_events_and_the_device_record_holds_none() -> None:
    h = Harness()  # 10 s allowed lateness: events 1 s apart all wait
    device_sizes = []
    for i in range(8):
        step = h.feed(raw_event(f"e{i}", "dev-a", at(i)))
        assert _writes(step, WAITING) == {waiting_key("dev-a", f"e{i}"): step_value(step, f"e{i}")}
        record = record_body(_writes(step, DEVICES)[b"dev-a"] or b"")
        assert "buf" not in record["s"]
        device_sizes.append(len(_writes(step, DEVICES)[b"dev-a"] or b""))
    assert len(h.core.devices["dev-a"].session.buffer) == 8  # type: ignore[union-attr]
    # The record grows only by the recent ids (one per event), not by the waiting payloads.
    assert device_sizes[-1] - device_sizes[0] < 8 * 40


def step_value(step: Step, event_id: str) -> bytes | None:
    return _writes(step, WAITING)[waiting_key("dev-a", event_id)]


def test_released_events_are_tombstoned_and_the_store_ends_empty() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 3))  # a0 released at once (watermark 20 - 10 s), a1 and a2 wait
    assert set(h.runner.stores[WAITING]) == {waiting_key("dev-a", "a1"), waiting_key("dev-a", "a2")}
    step = h.feed(raw_event("b0", "dev-b", at(200)))  # the watermark passes a1 and a2
    assert _writes(step, WAITING)[waiting_key("dev-a", "a1")] is None
    assert _writes(step, WAITING)[waiting_key("dev-a", "a2")] is None
    h.sweep()
    assert dict(h.runner.stores[WAITING]) == {}


def test_a_restart_puts_the_waiting_events_back_and_the_visits_come_out_unchanged() -> None:
    straight, first = Harness(), Harness()
    for h in (straight, first):
        h.feed(*visit("a", "dev-a", 0, 4), *visit("c", "dev-c", 25, 3))
    assert len(first.runner.stores[WAITING]) > 0  # the crash comes while events wait
    second = first.restarted()
    for h in (straight, second):
        h.feed(*visit("a", "dev-a", 40, 2, step=5))
        h.sweep()
    crashed = visits_of(
        first.decoded("enriched") + second.decoded("enriched"),
        first.decoded("sessions") + second.decoded("sessions"),
    )
    assert crashed == straight.sessions_of()
    sessions = [
        (s["session_id"], s["event_count"]) for s in first.decoded("sessions") + second.decoded("sessions")
    ]
    assert sorted(sessions) == sorted(
        (s["session_id"], s["event_count"]) for s in straight.decoded("sessions")
    )


def test_a_device_record_written_before_the_waiting_store_still_loads_its_waiting_events() -> None:
    h = Harness()
    h.feed(*visit("a", "dev-a", 0, 3))
    device = h.core.devices["dev-a"]
    assert device.session is not None
    old_style: dict[str, Any] = {
        "p": 0,
        "s": device.session.to_dict(with_buffer=False),
        "i": None,
        "t": device.last_ms,
    }
    old_style["s"]["buf"] = [event_to_list(e) for e in device.session.buffer]  # the former layout
    for key in list(h.runner.stores[WAITING]):
        h.runner.stores[WAITING].put(0, key, None)
    h.runner.stores[DEVICES].put(0, b"dev-a", json.dumps(old_style).encode())
    h.core.load(h.runner.stores[DEVICES], h.runner.stores["clocks"].items(), {1})  # revoke
    h.core.load(h.runner.stores[DEVICES], h.runner.stores["clocks"].items(), {0, 1})
    loaded = h.core.devices["dev-a"].session
    assert isinstance(loaded, DeviceState) and [e.event_id for e in loaded.buffer] == ["a1", "a2"]
    assert Device.from_bytes(json.dumps(old_style).encode()).session is not None


def test_events_a_former_worker_left_waiting_with_their_payload_go_out_once_with_their_visit() -> None:
    """Before events went on at arrival, a waiting event held its enriched bytes (the codec's
    ``pending`` form) and was sent only on release: after an upgrade it must still go out, once,
    with its session id, or it would never reach the webhouse."""
    h = Harness()
    events = visit("a", "dev-a", 0, 3)
    h.feed(*events)
    waiting = h.core.devices["dev-a"].session
    assert waiting is not None and [e.event_id for e in waiting.buffer] == ["a1", "a2"]
    codec = EventCodec()
    for event in events[1:]:  # what a former worker saved: the waiting events with their payload
        value = EVENTS.encode(event)
        record = codec.decode(value)
        payload = codec.pending(value, record, Enricher().enrich(record))
        (saved,) = [e for e in waiting.buffer if e.event_id == event["message_id"]]
        stored = encode_waiting(dataclasses.replace(saved, payload=payload))
        h.runner.stores[WAITING].put(0, waiting_key("dev-a", saved.event_id), stored)
    h.core.load(h.runner.stores[DEVICES], h.runner.stores["clocks"].items(), {1})  # revoke
    h.core.load(
        h.runner.stores[DEVICES],
        h.runner.stores["clocks"].items(),
        {0, 1},
        h.runner.stores[WAITING].items(),
    )
    h.outputs.clear()
    h.sweep()
    (session,) = h.decoded("sessions")
    resent = {r["message_id"]: r["enrichment"]["session_id"] for r in h.decoded("enriched")}
    assert resent == {"a1": session["session_id"], "a2": session["session_id"]}
