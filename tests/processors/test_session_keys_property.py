"""Sessions for every identity, through the worker stage, equal the batch reference over the chosen keys.

Each example: one partition, three devices and two customers (two devices share one; a device
signs in as its own customer only: shared devices are tests/processors/test_identity.py's matter);
anonymous page views, sign-ins (both ids) and server-side events (user id only), with event times
in bounded disorder, fed in random batch sizes. A model written here, apart from the worker, says
which session key each event gets, in log order:

- an event with an anonymous id: that id;
- a server-side event of customer C at time t: among the devices whose latest sign-in at or before
  t (by time, then customer id) is C, those with a visit open at the partition watermark (their
  latest accepted event is less than gap + 1 ms behind it), the most recently active (then by id);
  none: C itself.

Checked: the late verdicts; each on-time event's session id equals the reference's
(``sessionize_batch`` over the events re-keyed by the model); the closed sessions equal the
reference's, field for field.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.serde import SingleObjectSerde
from pipeline.settings import SessionPolicySettings, Settings, WorkerSettings
from processors.sessions import SessionPolicy, from_ms, sessionize_batch, to_ms
from processors.worker.core import session_event
from tests.processors.sessioned import visits_of
from tests.processors.test_worker_core import Harness
from tests.processors.worker_support import raw_event

MINUTE_MS = 60_000
GAP_S, LATENESS_S = 600, 300
GAP = GAP_S * 1000
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DEVICES = ["d0", "d1", "d2"]
CUSTOMERS = ["c1", "c2"]
OWNER = {"d0": "c1", "d1": "c1", "d2": "c2"}
SESSIONS = SingleObjectSerde("session")


def config(device_cache: int = 50_000) -> Settings:
    policy = SessionPolicySettings(
        inactivity_gap_s=GAP_S, allowed_lateness_s=LATENESS_S, max_duration_s=86400
    )
    return Settings(worker=WorkerSettings(session=policy, device_cache=device_cache))


@dataclass(frozen=True)
class Planned:
    mid: str
    time_ms: int
    arrival_ms: int
    device: str | None
    user: str | None
    kind: str  # page, identify, order


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[Planned], list[int]]:
    planned: list[Planned] = []
    time_ms = to_ms(START)
    for index in range(draw(st.integers(1, 30))):
        time_ms += draw(st.one_of(st.integers(0, 4 * MINUTE_MS), st.sampled_from([0, GAP, GAP + 1, 3 * GAP])))
        role = draw(st.sampled_from(["anon", "anon", "both", "server", "server"]))
        device = None if role == "server" else draw(st.sampled_from(DEVICES))
        if role == "server":
            user: str | None = draw(st.sampled_from(CUSTOMERS))
        else:
            user = OWNER[device] if role == "both" and device is not None else None
        kind = draw(st.sampled_from(["page", "order"] if role == "server" else ["page", "identify"]))
        if role == "anon":
            kind = "page"
        delay = draw(st.one_of(st.integers(0, LATENESS_S * 1000), st.integers(0, 3 * LATENESS_S * 1000)))
        planned.append(Planned(f"e{index:02d}", time_ms, time_ms + delay, device, user, kind))
    planned.sort(key=lambda p: (p.arrival_ms, p.mid))
    batches = draw(st.lists(st.integers(1, 6), min_size=len(planned), max_size=len(planned)))
    return planned, batches


def record(p: Planned) -> dict[str, Any]:
    arrival = from_ms(p.arrival_ms)
    fields: dict[str, Any] = {"timestamp": from_ms(p.time_ms), "sent_at": arrival, "received_at": arrival}
    if p.user is not None:
        fields["user_id"] = p.user
    if p.kind == "identify":
        fields["type"] = "identify"
    elif p.kind == "order":
        fields.update(
            type="track", event="Order Completed", commerce={"order_id": f"o-{p.mid}", "revenue": 1.0}
        )
    return raw_event(p.mid, p.device, from_ms(p.time_ms), **fields)


class Model:
    """The key rule, from the log alone."""

    def __init__(self) -> None:
        self.watermark = -(2**62)
        self.sign_ins: dict[str, list[tuple[int, str]]] = {d: [] for d in DEVICES}
        self.latest: dict[str, int] = {}  # session key -> latest accepted event time
        self.keys: dict[str, str] = {}
        self.late: set[str] = set()

    def customer_at(self, device: str, time_ms: int) -> str | None:
        earlier = [entry for entry in self.sign_ins[device] if entry[0] <= time_ms]
        return max(earlier)[1] if earlier else None

    def take(self, p: Planned) -> None:
        self.watermark = max(self.watermark, p.time_ms - LATENESS_S * 1000)
        if p.device is not None:
            key = p.device
            if p.user is not None:
                self.sign_ins[p.device].append((p.time_ms, p.user))
        else:
            assert p.user is not None
            open_devices = [
                (self.latest[d], d)
                for d in DEVICES
                if self.customer_at(d, p.time_ms) == p.user
                and d in self.latest
                and self.watermark < self.latest[d] + GAP + 1
            ]
            key = max(open_devices)[1] if open_devices else p.user
        self.keys[p.mid] = key
        if p.time_ms < self.watermark:
            self.late.add(p.mid)
        else:
            self.latest[key] = max(self.latest.get(key, p.time_ms), p.time_ms)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), st.sampled_from([1, 50_000]), st.booleans())
def test_sessions_of_every_identity_equal_the_batch_reference(
    log: tuple[list[Planned], list[int]], device_cache: int, on_disk: bool
) -> None:
    """Also with one decoded device at most (the others read back from the store as events need
    them), and on the disk store."""
    with tempfile.TemporaryDirectory() as state_dir:
        check_keys_against_the_reference(
            log, Harness(config(device_cache), state_dir=Path(state_dir) if on_disk else None)
        )


def check_keys_against_the_reference(log: tuple[list[Planned], list[int]], h: Harness) -> None:
    planned, sizes = log
    model = Model()
    position = 0
    for size in sizes:
        chunk = planned[position : position + size]
        if not chunk:
            break
        h.feed(*(record(p) for p in chunk))
        for p in chunk:
            model.take(p)
        position += size
    final_watermark = h.core.watermark(0)
    assert final_watermark == model.watermark
    h.sweep()

    enriched = {r["message_id"]: r for r in h.decoded("enriched")}
    assert {mid for mid, r in enriched.items() if r["enrichment"]["is_late"]} == model.late
    on_time = [
        session_event(r, r["enrichment"], model.keys[mid])
        for mid, r in enriched.items()
        if mid not in model.late
    ]
    policy = SessionPolicy.from_settings(h.core.settings.worker.session)
    reference = sessionize_batch(on_time, policy, final_watermark_ms=final_watermark)
    assert {mid: r["enrichment"]["session_key"] for mid, r in enriched.items() if mid not in model.late} == {
        mid: key for mid, key in model.keys.items() if mid in enriched and mid not in model.late
    }
    visits = visits_of(enriched.values(), h.decoded("sessions"))
    assert {mid: visits[mid] for mid in enriched if mid not in model.late} == reference.assignments
    expected = sorted(
        (SESSIONS.decode(SESSIONS.encode(s.to_record())) for s in reference.sessions),
        key=lambda s: (s["anonymous_id"], s["start"]),
    )
    streamed = sorted(h.decoded("sessions"), key=lambda s: (s["anonymous_id"], s["start"]))
    assert streamed == expected
