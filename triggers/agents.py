"""Faust glue for triggers/: ``register(app, settings)`` adds agents, tables and a timer.

The worker (processors/worker) calls it on its own App, so triggers run in the
same process and serve metrics on the same endpoint. Agents only move bytes;
``TriggerCore`` (core.py) decides:

- ``triggers-route``: enriched events, sessions, identity links -> triggers topic, by customer;
- ``triggers-evaluate``: triggers topic -> engine -> alerts + profiles, then the
  changed states to the ``trigger-states`` table (outputs first, then state: a crash
  in between repeats outputs with the same alert ids, never loses them);
- ``triggers-deliver``: alerts topic -> signed webhook POSTs for fired alerts; what
  no retry gets through goes to the dead-letter topic (stage ``delivery``);
- timer ``triggers-sweep`` (``triggers.sweep_interval_s``, wall clock): absence
  windows and scheduled rules at event-time "now" = the latest event time the
  partitions have seen (``trigger-clocks`` table, so it survives restarts).
Rules load at start; an edited rules directory is reloaded at the next sweep (state is kept;
a rule set that does not validate is refused and the previous one stays).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import faust
from faust.types import EventT

from pipeline.errors import RuleError, WebhouseError
from pipeline.runtime.clock import StageClock
from pipeline.runtime.messages import Incoming, headers_of
from pipeline.runtime.offset_gaps import BrokerRangeReader, Expected, fill_gaps
from pipeline.settings import Settings
from triggers.alerts import Alert
from triggers.core import Result, TriggerCore
from triggers.metrics import TriggerMetrics
from triggers.ruleset import RuleWatcher
from triggers.webhook import RetryPolicy, WebhookSender, body_of

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def _incoming(events: list[EventT]) -> list[Incoming]:
    return [
        Incoming(
            e.message.topic, e.message.partition, e.message.offset, e.message.key,
            e.message.value if e.message.value is not None else b"", None, headers_of(e.message),
        )
        for e in events
    ]  # fmt: skip


class TriggerRuntime:
    """Moves records between Kafka, ``TriggerCore`` and the tables; holds no logic of its own."""

    def __init__(self, app: faust.App, settings: Settings, metrics: TriggerMetrics) -> None:
        self.app = app
        self.settings = settings
        self.watcher = RuleWatcher(settings.triggers.rules_dir)
        rules = self.watcher.load()
        log.info("triggers: %d rules loaded from %s", len(rules.rules), settings.triggers.rules_dir)
        self.core = TriggerCore(settings, rules, metrics)
        self.metrics = metrics
        topics = self.core.topics
        p = topics.partitions
        # key_type/value_type bytes is what makes faust pick the raw codec for the changelog topic
        # (a Schema alone leaves it on json, and recovery then fails to decode our bytes).
        raw_bytes: Any = faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
        table: dict[str, Any] = {"partitions": p, "schema": raw_bytes, "key_type": bytes, "value_type": bytes}
        self.states = app.Table("trigger-states", help="Per-customer trigger state.", **table)
        self.clocks = app.Table("trigger-clocks", help="Latest event time per partition.", **table)
        names = (topics.enriched_events, topics.sessions, topics.identity)
        self.sources = [app.topic(*names, partitions=p, **RAW)]
        self.inputs = app.topic(topics.triggers_input, partitions=p, **RAW)
        self.alerts = app.topic(topics.alerts, partitions=p, **RAW)
        self.lock = asyncio.Lock()
        self.sender: WebhookSender | None = None
        self.expected = {agent: Expected() for agent in ("route", "evaluate", "deliver")}
        self.gap_reader = BrokerRangeReader(settings.kafka.bootstrap_servers, stage="triggers")

    # -- agents ---------------------------------------------------------------------------

    async def route(self, stream: Any) -> None:
        batch = self.settings.worker
        async for events in stream.take_events(batch.batch_max_events, within=batch.batch_within_s):
            messages = await self.repair(self.expected["route"], _incoming(list(events)))
            await self.send(self.core.route(messages, datetime.now(UTC)))

    async def evaluate(self, stream: Any) -> None:
        batch = self.settings.worker
        async for events in stream.take_events(batch.batch_max_events, within=batch.batch_within_s):
            messages = await self.repair(self.expected["evaluate"], _incoming(list(events)))
            async with self.lock:
                result = self.core.evaluate(messages, self.states.data.get, datetime.now(UTC))
                advanced = await self.write(result)
            if advanced:  # windows close when the watermark passes them, not at the next timer
                await self.sweep()

    async def deliver(self, stream: Any) -> None:
        try:
            await self._deliver(stream)
        finally:
            if self.sender is not None:
                await self.sender.session.close()
                self.sender = None

    async def _deliver(self, stream: Any) -> None:
        urls = self.settings.triggers.webhook_urls
        async for event in stream.events():
            for message in await self.repair(self.expected["deliver"], _incoming([event])):
                if urls:
                    await self._deliver_one(message)

    async def _deliver_one(self, message: Incoming) -> None:
        try:
            alert = Alert.from_record(self.core.serdes["alert"].decode(message.value, message.topic))
        except (WebhouseError, KeyError, TypeError, ValueError) as exc:
            result = Result()
            self.core.dead_letter(result, message, "undecodable_alert", exc, datetime.now(UTC))
            await self.send(result)
            return
        if alert.status != "fired":
            return
        sender = self._sender()
        for delivery in await sender.deliver(alert):
            if delivery.ok:
                self.metrics.webhook_delivered.inc()
                continue
            log.warning("alert %s not delivered to %s: %s", alert.alert_id, delivery.url, delivery.error)
            dead = self.core.delivery_dead_letter(
                body_of(alert),
                alert.alert_id,
                delivery.url,
                delivery.error or "failed",
                datetime.now(UTC),
            )
            await self.app.producer.send(dead.topic, dead.key, dead.value, None, None, None)

    async def sweep(self) -> None:
        if not self._recovered():
            return
        self.maybe_reload()
        async with self.lock:
            clocks = {p: self._clock(p) for p in self._assigned()}
            result = self.core.sweep(self.states.data, clocks)
            await self.write(result)

    def _clock(self, partition: int) -> StageClock:
        return self.core.clock(self.clocks.data, partition)

    # -- plumbing -------------------------------------------------------------------------

    def maybe_reload(self) -> None:
        """Edited rule files take effect at the next sweep; state stays. A bad edit keeps the old rules."""
        try:
            rules = self.watcher.poll()
        except RuleError as exc:
            log.error("triggers: rules not reloaded, keeping the previous ones: %s", exc)
            self.metrics.reloads.labels("refused").inc()
            return
        if rules is None:
            return
        self.core.engine.reload(rules)
        self.metrics.reloads.labels("reloaded").inc()
        log.info("triggers: %d rules reloaded from %s", len(rules.rules), self.watcher.directory)

    def _sender(self) -> WebhookSender:
        if self.sender is None:
            t = self.settings.triggers
            self.sender = WebhookSender(
                t.webhook_urls,
                t.webhook_secret,
                RetryPolicy.from_settings(t),
                aiohttp.ClientSession(),
                on_attempt=self._attempted,
            )
        return self.sender

    def _attempted(self, seconds: float, failure: str | None) -> None:
        self.metrics.webhook_latency.observe(seconds)
        if failure:
            self.metrics.webhook_failures.labels(failure).inc()

    async def repair(self, expected: Expected, messages: list[Incoming]) -> list[Incoming]:
        """Messages the consumer skipped since the assignment, read back in place (runtime.offset_gaps)."""
        assignment = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        messages, counts = await fill_gaps(messages, expected.for_assignment(assignment), self.gap_reader)
        expected.advance(messages)
        for outcome, count in counts.items():
            if count:
                self.metrics.offset_gaps.labels(outcome).inc(count)
        return messages

    def _recovered(self) -> bool:
        recovery = getattr(self.app.tables, "recovery", None)
        return bool(recovery is not None and recovery.completed.is_set() and not self.app.rebalancing)

    def _assigned(self) -> set[int]:
        name = self.core.topics.triggers_input
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == name}

    async def send(self, result: Result) -> None:
        producer = self.app.producer
        for out in result.outputs:
            await producer.send(out.topic, out.key, out.value, out.partition, None, None)
        await producer.flush()

    async def write(self, result: Result) -> bool:
        """Outputs first, then state and clocks; both flushed before the batch is acked.
        True when a partition's watermark moved (so windows may be due)."""
        await self.send(result)
        produced = time.time()
        for alert in result.alerts:
            self.metrics.alert(alert, produced)
        for key, (partition, value) in result.states.items():
            if value is None:
                self.states.data.pop(key, None)
            else:
                self.states.data[key] = value
            self.states.send_changelog(partition, key, value)
        changed, advanced = self.core.advance_clocks(self.clocks.data, result)
        for partition, (clock_key, value) in changed.items():
            self.clocks.send_changelog(partition, clock_key, value)
        await self.app.producer.flush()
        return advanced


def register(app: faust.App, settings: Settings, metrics: TriggerMetrics | None = None) -> TriggerRuntime:
    """Add the trigger agents, tables and sweep timer to an App (the worker's, or standalone.py's).

    Metrics go to the worker's registry when there is one, so one endpoint serves both.
    """
    if metrics is None:
        worker_runtime = getattr(app, "webhouse_runtime", None)
        registry = getattr(getattr(worker_runtime, "metrics", None), "registry", None)
        metrics = TriggerMetrics(registry)
    runtime = TriggerRuntime(app, settings, metrics)
    app.agent(runtime.sources[0], name="triggers-route")(runtime.route)
    app.agent(runtime.inputs, name="triggers-evaluate")(runtime.evaluate)
    app.agent(runtime.alerts, name="triggers-deliver")(runtime.deliver)
    app.timer(settings.triggers.sweep_interval_s, name="triggers-sweep")(runtime.sweep)
    app.webhouse_triggers = runtime  # type: ignore[attr-defined]
    return runtime
