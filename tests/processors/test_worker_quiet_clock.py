"""A quiet partition's event clock follows the wall clock: visits close by their own rules, and a
pause (a killed collector, a lull) never cuts a visit the undisturbed stream keeps whole.

The worker stage runs on the in-memory runtime with a clock the test moves; the runtime's timer
(``tick``) is called as the Kafka runner calls it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from pipeline.runtime.control import is_control
from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.stage import Record
from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, SessionPolicySettings, Settings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.stage import WorkerStage
from tests.processors.sessioned import visits_of
from tests.processors.worker_support import T0, raw_event

EVENTS = SingleObjectSerde("customer_event")
SESSIONS = SingleObjectSerde("session")
GAP_S, LATENESS_S, QUIET_S = 60, 10, 1.0


class Wall:
    """The runtime's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=T0.tzinfo)

    def __call__(self) -> datetime:
        return self.now

    def pass_(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_runner(wall: Wall) -> tuple[MemoryRunner, MemoryBroker, Topics]:
    policy = SessionPolicySettings(
        inactivity_gap_s=GAP_S, allowed_lateness_s=LATENESS_S, idle_close_interval_s=QUIET_S
    )
    settings = Settings(kafka=KafkaSettings(), worker=WorkerSettings(session=policy, extensions=[]))
    broker = MemoryBroker(partitions=1)
    runner = MemoryRunner(lambda: WorkerStage(settings), broker, "worker", now=wall)
    return runner, broker, Topics.from_settings(settings.kafka)


def send(runner: MemoryRunner, broker: MemoryBroker, topics: Topics, mid: str, seconds: float) -> None:
    event = raw_event(mid, "dev-a", T0 + timedelta(seconds=seconds))
    broker.append(Record(topics.raw_events, b"dev-a", EVENTS.encode(event), 0))
    runner.process(runner.take(topics.raw_events, 0, 100))


def sessions(broker: MemoryBroker, topics: Topics) -> list[tuple[int, str]]:
    return [
        (s["event_count"], s["closed_by"])
        for s in (
            SESSIONS.decode(m.value) for m in broker.records(topics.sessions) if not is_control(m.headers)
        )
    ]


def quiet(runner: MemoryRunner, wall: Wall, seconds: float) -> None:
    """``seconds`` of wall time with nothing arriving, the timer firing every second."""
    for _ in range(int(seconds)):
        wall.pass_(1.0)
        runner.tick()


def test_a_pause_shorter_than_the_gap_does_not_cut_the_visit() -> None:
    wall = Wall()
    runner, broker, topics = make_runner(wall)
    send(runner, broker, topics, "a1", 0)
    quiet(runner, wall, 30)  # a killed collector: half a gap of silence, then the same visit goes on
    send(runner, broker, topics, "a2", 40)
    quiet(runner, wall, 30)
    assert sessions(broker, topics) == []  # the clock moved 30 s past a2: the gap is not over
    quiet(runner, wall, GAP_S + LATENESS_S)
    assert sessions(broker, topics) == [(2, "inactivity")]


def test_a_quiet_partition_closes_its_visit_by_inactivity_once_the_gap_has_passed() -> None:
    wall = Wall()
    runner, broker, topics = make_runner(wall)
    send(runner, broker, topics, "a1", 0)
    quiet(runner, wall, GAP_S + LATENESS_S - 2)
    assert sessions(broker, topics) == []
    quiet(runner, wall, 3)
    assert sessions(broker, topics) == [(1, "inactivity")]
    send(runner, broker, topics, "a2", GAP_S + LATENESS_S + 5)  # after the gap: a new visit, not late
    enriched = [EVENTS.decode(m.value) for m in broker.records(topics.enriched_events) if m.key is not None]
    assert not any(e["enrichment"]["is_late"] for e in enriched)


def test_the_quiet_clock_survives_a_restart() -> None:
    wall = Wall()
    runner, broker, topics = make_runner(wall)
    send(runner, broker, topics, "a1", 0)
    quiet(runner, wall, 40)
    runner.restart()  # the moved clock is in the clocks store: the gap keeps counting from 40 s
    quiet(runner, wall, GAP_S + LATENESS_S - 40 + 2)
    assert sessions(broker, topics) == [(1, "inactivity")]


def enriched(broker: MemoryBroker, topics: Topics) -> dict[str, str | None]:
    """message id -> session id of the enriched events out so far (None: its visit is open)."""
    events = [EVENTS.decode(m.value) for m in broker.records(topics.enriched_events) if m.key is not None]
    visits = [SESSIONS.decode(m.value) for m in broker.records(topics.sessions) if not is_control(m.headers)]
    return visits_of(events, visits)


def test_waiting_events_go_into_their_visit_once_the_partition_is_quiet_and_it_stays_open() -> None:
    wall = Wall()
    runner, broker, topics = make_runner(wall)
    send(runner, broker, topics, "a1", 0)
    assert enriched(broker, topics) == {"a1": None}  # on its way at once, its visit not closed
    waiting = cast(WorkerStage, runner.stage).core.devices["dev-a"].session
    assert waiting is not None and [e.event_id for e in waiting.buffer] == ["a1"]  # 10 s of lateness
    quiet(runner, wall, 2)  # caught up and quiet: nothing else is coming, into its visit now
    assert not waiting.buffer and waiting.current is not None and sessions(broker, topics) == []
    send(runner, broker, topics, "a2", 20)
    quiet(runner, wall, GAP_S + LATENESS_S + 2)
    out = enriched(broker, topics)
    assert sessions(broker, topics) == [(2, "inactivity")]
    assert out["a1"] == out["a2"] is not None  # the same visit, not one cut at the pause
