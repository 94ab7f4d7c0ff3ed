"""The stream side in one process: the production stages on the in-memory runtime.

``LocalPipeline`` runs the worker's stage (``processors.worker.stage``) and the trigger stages that
decide (``triggers.stages``: route, evaluate; webhooks are not called) on ``MemoryPipeline``
(``pipeline.runtime.memory``), so whatever uses it gets the verdicts of the deployed code: the
same sessions, stitching, hand-overs, clocks and guardrails. Inputs go where a broker would have
them: raw events to the raw topic (the worker sessionizes them), or, with ``worker=False``,
enriched events and closed sessions straight to the worker's output topics, with ``advance``
standing in for the worker's progress reports (the event-time clock of the trigger stages).
``webhouse triggers test`` and the tests that replay simulated traffic through the rules use it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry

from pipeline.runtime.control import Progress, SourceState, watermark_headers
from pipeline.runtime.memory import FIXED_NOW, MemoryBroker, MemoryPipeline, MemoryRunner
from pipeline.runtime.stage import Record, Stage
from pipeline.serde import make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.runner import group_id
from processors.worker.stage import WorkerStage
from triggers.alerts import Alert
from triggers.metrics import TriggerMetrics
from triggers.ruleset import RuleSet
from triggers.stages import STATES, EvaluateStage, RouteStage
from triggers.state import CustomerState, Window

SEED = 0  # the order runners take turns in; any order gives the same alerts (tests/triggers)


class LocalPipeline:
    """See the module docstring. ``rules`` replaces the rules read from ``triggers.rules_dir``;
    ``partitions`` replaces ``kafka.default_partitions`` (one: every key in one log, in input order)."""

    def __init__(self, settings: Settings, rules: RuleSet | None = None, *, worker: bool = True,
                 partitions: int = 1, max_batch: int = 64) -> None:  # fmt: skip
        kafka = settings.kafka.model_copy(update={"default_partitions": partitions})
        self.settings = settings.model_copy(update={"kafka": kafka})
        self.topics = Topics.from_settings(kafka)
        self.rules = rules
        self.broker = MemoryBroker(partitions)
        registry = CollectorRegistry()  # the metrics of every restart of a stage in one place
        trigger_metrics = TriggerMetrics(registry)
        stages: list[tuple[Callable[[], Stage], str]] = []
        if worker:
            worker_metrics = WorkerMetrics(registry)
            stages.append((lambda: WorkerStage(self.settings, worker_metrics), group_id(self.settings)))
        stages.append((lambda: RouteStage(self.settings, trigger_metrics), "local-triggers-route"))
        stages.append((lambda: self._evaluate(trigger_metrics), "local-triggers-evaluate"))
        self.wall = FIXED_NOW  # the runtime's wall clock; ``finish`` lets it run to the end time
        self.runners = [MemoryRunner(make, self.broker, group, now=self._now) for make, group in stages]
        self.worker = self.runners[0] if worker else None
        self.evaluate = self.runners[-1]
        self.pipeline = MemoryPipeline(self.broker, self.runners, random.Random(SEED), max_batch=max_batch)
        self.serdes = {name: make_serde(name, None) for name in ("customer_event", "session", "alert")}
        self.alerts: list[Alert] = []
        self._read = 0  # alerts-topic records already decoded into ``alerts``

    def _now(self) -> datetime:
        return self.wall

    def _evaluate(self, metrics: TriggerMetrics) -> EvaluateStage:
        stage = EvaluateStage(self.settings, metrics)
        if self.rules is not None:
            stage.core.engine.reload(self.rules)
        return stage

    # -- inputs ---------------------------------------------------------------------------

    def raw(self, record: dict[str, Any]) -> None:
        """A raw customer event (Avro dict), keyed by its device as the collector keys it."""
        key = record.get("anonymous_id") or record.get("user_id") or record["message_id"]
        value = self.serdes["customer_event"].encode(record, self.topics.raw_events)
        self.broker.append(Record(self.topics.raw_events, str(key).encode(), value))

    def enriched(self, record: dict[str, Any]) -> None:
        """An enriched event (Avro dict), as the worker writes it (``worker=False``)."""
        key = record.get("anonymous_id") or record.get("user_id") or record["message_id"]
        value = self.serdes["customer_event"].encode(record, self.topics.enriched_events)
        self.broker.append(Record(self.topics.enriched_events, str(key).encode(), value))

    def session(self, record: dict[str, Any]) -> None:
        """A closed session (Avro dict), as the worker writes it (``worker=False``)."""
        value = self.serdes["session"].encode(record, self.topics.sessions)
        self.broker.append(Record(self.topics.sessions, record["anonymous_id"].encode(), value))

    def advance(self, ms: int) -> None:
        """Event time ``ms`` reached on every enriched and sessions partition, as the worker
        reports it: nothing older follows there."""
        value = Progress(SourceState.ACTIVE, ms).to_bytes()
        for partition in range(self.broker.partitions):
            for topic in (self.topics.enriched_events, self.topics.sessions):
                self.broker.append(Record(topic, None, value, partition, watermark_headers()))

    # -- running and reading back ---------------------------------------------------------

    def run(self) -> list[Alert]:
        """Every stage until all is read (then each timer once more); the alerts decided meanwhile."""
        self.pipeline.run()
        decided = [
            Alert.from_record(self.serdes["alert"].decode(m.value, m.topic))
            for m in self.broker.records(self.topics.alerts)[self._read :]
        ]
        self._read += len(decided)
        self.alerts.extend(decided)
        return decided

    def finish(self, end_ms: int) -> list[Alert]:
        """End of the input: every stage runs out, then nothing more comes until event time
        ``end_ms``: the wall clock runs on as far, so the worker's quiet partitions move their
        clocks there and close the visits that have ended by then, as a deployed worker would;
        the triggers' clock moves to ``end_ms``. Returns the alerts decided meanwhile."""
        decided = self.run()
        if self.worker is not None:
            core = cast(WorkerStage, self.worker.stage).core
            lateness_ms = core.policy.allowed_lateness_ms
            behind = [end_ms + lateness_ms - top for top in core.max_event_ms.values()]
            self.wall += timedelta(milliseconds=max([0, *behind]))
            decided += self.run()
        self.advance(end_ms)
        return decided + self.run()

    def states(self) -> dict[str, CustomerState]:
        """Customer states by key, as the evaluate stage stores them; not devices handed over."""
        found: dict[str, CustomerState] = {}
        for key, value in self.evaluate.stores[STATES].items():
            state = CustomerState.from_dict(json.loads(value))
            if state.moved_to is None:
                found[key.decode()] = state
        return found

    def pending(self) -> list[Window]:
        """Windows still open: absence windows and marketing alerts held for the clock."""
        return [w for state in self.states().values() for w in state.windows]
