"""Runners of the runtime tests on the real broker: a copy stage whose tick gets stuck on cue, and
a runner on a thread of its own that keeps what ended it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from pipeline.health import Health
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import RunnerView, Step, Stores
from tests.pipeline.runtime.copy_stage import Copy


def create_topics(bootstrap: str, names: tuple[str, ...], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1) for name in names]).values():
        future.result()


class StuckTick(Copy):
    """Copies its input; once ``stall`` is set, its next tick blocks until ``resume`` is set and
    then returns ``after`` (what a process stuck that long would commit). Once only."""

    tick_interval_s = 0.2

    def __init__(self, source: str, target: str, after: Step | None = None) -> None:
        super().__init__(source, target)
        self.after = after or Step()
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self.ticked = threading.Event()

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        if not self.stall.is_set() or self.ticked.is_set():
            return Step()
        self.stalled.set()
        self.resume.wait(120)
        self.ticked.set()
        return self.after


@dataclass
class RunnerThread:
    """A ``KafkaRunner`` of ``stage`` run on its own thread; what ended it with an error is kept in
    ``errors`` (the test asserts on it, rather than pytest's warning about a thread's exception)."""

    stage: Copy
    bootstrap: str
    group: str
    instance: str
    session_timeout_s: float = 6.0
    consumer: dict[str, Any] = field(default_factory=dict)  # extra librdkafka consumer settings
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = RunnerConfig(
            self.bootstrap, self.group, {}, batch_within_s=0.2, session_timeout_s=self.session_timeout_s,
            instance_id=self.instance, extra_consumer=self.consumer,
        )  # fmt: skip
        metrics = RuntimeMetrics(CollectorRegistry())
        self.runner = KafkaRunner(self.stage, config, metrics, Health(self.stage.name, 600.0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run(self.stop)
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        """Stop and wait; a tick stuck on cue is let go first."""
        self.stop.set()
        if isinstance(self.stage, StuckTick):
            self.stage.resume.set()
        if self.thread.is_alive():
            self.thread.join(60)
