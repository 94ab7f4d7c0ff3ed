"""The triggers as runtime stages (``pipeline.runtime``); ``TriggerCore`` decides, these move bytes.

- ``route``: enriched events, sessions, identity links -> triggers topic, by customer;
- ``evaluate``: triggers topic -> engine -> alerts + profiles + the changed states and
  partition clocks, all in the transaction that commits the offsets; windows close when
  a partition's watermark passes them (in the same step that moved it) and at the timer;
- ``deliver``: alerts topic -> signed webhook POSTs for fired alerts, at least once, the
  alert id as idempotency key; what no retry gets through goes to the dead-letter topic.
Rules load at start; an edited rules directory is reloaded at the next timer (state is kept;
a rule set that does not validate is refused and the previous one stays).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime

import aiohttp
from prometheus_client import CollectorRegistry

from pipeline.erasure import Erasure
from pipeline.errors import RuleError, WebhouseError
from pipeline.runtime.host import StageSpec
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Overlay, Record, RunnerView, Step, Stores, StoreWrite
from pipeline.runtime.store import prefetch
from pipeline.settings import Settings
from pipeline.topics import Topics
from triggers.alerts import Alert
from triggers.core import Result, TriggerCore
from triggers.metrics import TriggerMetrics
from triggers.ruleset import RuleWatcher
from triggers.webhook import RetryPolicy, WebhookSender, body_of

log = logging.getLogger(__name__)
STATES = "trigger-states"
CLOCKS = "trigger-clocks"
PENDING = "trigger-pending"  # inputs held until the clock has passed them (triggers.hold)


def _core(settings: Settings, metrics: TriggerMetrics) -> tuple[RuleWatcher, TriggerCore]:
    watcher = RuleWatcher(settings.triggers.rules_dir)
    return watcher, TriggerCore(settings, watcher.load(), metrics)


def to_step(result: Result) -> Step:
    step = Step([Record(o.topic, o.key, o.value, o.partition) for o in result.outputs])
    step.writes.extend(StoreWrite(STATES, p, key, value) for key, (p, value) in result.states.items())
    return step


class RouteStage:
    name = "triggers-route"
    inputs: tuple[str, ...]
    broadcasts: tuple[str, ...]
    store_names: tuple[str, ...] = ()
    tick_interval_s = 60.0

    def __init__(self, settings: Settings, metrics: TriggerMetrics) -> None:
        _, self.core = _core(settings, metrics)
        t = self.core.topics
        self.inputs = (t.enriched_events, t.sessions, t.identity)
        self.broadcasts = (t.erasures,)

    def on_broadcast(self, records: list[Incoming], stores: Stores, now: datetime) -> Step:
        """Erasures: from now on, inputs of forgotten ids from before it are not routed (evaluate
        drops the states and tombstones the profiles)."""
        for record in records:
            self.core.apply_erasure(Erasure.from_bytes(record.value), lambda key: None)
        return Step()

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        """Also after an aborted batch (the runtime rewinds through here): the hand-overs that
        batch routed were discarded with it, so none may be remembered as sent."""
        self.core.forget_handovers()

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        return to_step(self.core.route(batch, now))

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()


class EvaluateStage:
    name = "triggers-evaluate"
    inputs: tuple[str, ...]
    broadcasts: tuple[str, ...]
    store_names: tuple[str, ...] = (STATES, CLOCKS, PENDING)

    def __init__(self, settings: Settings, metrics: TriggerMetrics) -> None:
        self.watcher, self.core = _core(settings, metrics)
        log.info("triggers: rules loaded from %s", self.watcher.directory)
        self.metrics = metrics
        self.inputs = (self.core.topics.triggers_input,)
        self.broadcasts = (self.core.topics.erasures,)
        self.tick_interval_s = settings.triggers.sweep_interval_s
        self.held_in_memory = settings.triggers.held_in_memory
        self.owned: frozenset[int] = frozenset()

    def on_broadcast(self, records: list[Incoming], stores: Stores, now: datetime) -> Step:
        """Erasures: the customer's and its devices' states go (their windows with them), and their
        profiles are tombstoned; older inputs of these ids are dropped from now on."""
        step = Step()
        for record in records:
            erasure = Erasure.from_bytes(record.value)
            step.extend(
                to_step(self.core.apply_erasure(erasure, Overlay(stores[STATES], step.writes, STATES).get))
            )
        return step

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        self.owned = partitions
        self.core.reset_index()
        marks = self.core.marks(stores[CLOCKS], partitions)
        self.core.held.reset(partitions, stores[PENDING], lambda p, device: marks[p].of(device))

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        """Hold the inputs, move the clocks, apply what they passed, then decide what is due."""
        taken = self.core.evaluate(batch, now)
        prefetch(stores[STATES], (held.key for _, held in taken.held))  # one query, not one per key
        clocks = dict(stores[CLOCKS])
        changed, advanced = self.core.advance_clocks(clocks, taken)
        step = to_step(taken)
        step.writes.extend(StoreWrite(CLOCKS, p, key, value) for key, (p, value) in changed.items())
        marks = self.core.marks(clocks, self.owned)
        states = Overlay(stores[STATES], step.writes, STATES)
        released = self.core.release(marks, states.get, now, stores[PENDING].get)
        step.extend(to_step(released))

        def applied_below(partition: int, device: bool) -> int | None:
            return marks[partition].of(device)

        pending = self.core.held.settle(taken.held, released.released, applied_below, stores[PENDING].get)
        step.writes.extend(StoreWrite(PENDING, p, key, value) for p, key, value in pending)
        self._count(released)
        if advanced:  # windows close when the marks pass them, not at the next timer
            step.extend(self._sweep(Overlay(stores[STATES], step.writes, STATES), clocks))
        # Every input still held is in the store once this step's writes are (triggers.hold).
        held = self.core.held
        held.park(self.held_in_memory, applied_below)
        self.metrics.held.labels("memory").set(held.in_memory)
        self.metrics.held.labels("parked").set(held.held - held.in_memory)
        return step

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        self.maybe_reload()
        return self._sweep(stores[STATES], dict(stores[CLOCKS]))

    def _sweep(self, states: Mapping[bytes, bytes], clocks: Mapping[bytes, bytes]) -> Step:
        result = self.core.sweep(states, self.core.marks(clocks, self.owned))
        self._count(result)
        return to_step(result)

    def _count(self, result: Result) -> None:
        produced = time.time()
        for alert in result.alerts:
            self.metrics.alert(alert, produced)

    def maybe_reload(self) -> None:
        """Edited rule files take effect at the next timer; state stays. A bad edit keeps the old rules."""
        try:
            rules = self.watcher.poll()
        except RuleError as exc:
            log.error("triggers: rules not reloaded, keeping the previous ones: %s", exc)
            self.metrics.reloads.labels("refused").inc()
            return
        if rules is None:
            return
        self.core.reload(rules)
        self.metrics.reloads.labels("reloaded").inc()
        log.info("triggers: %d rules reloaded from %s", len(rules.rules), self.watcher.directory)


class DeliverStage:
    """At least once: the runtime commits the offsets only after the batch's POSTs are done."""

    name = "triggers-deliver"
    inputs: tuple[str, ...]
    store_names: tuple[str, ...] = ()
    tick_interval_s = 60.0

    def __init__(self, settings: Settings, metrics: TriggerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        _, self.core = _core(settings, metrics)
        self.inputs = (self.core.topics.alerts,)
        self.loop = asyncio.new_event_loop()  # this stage's thread runs it, one batch at a time
        self.sender: WebhookSender | None = None

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        return None

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        if not self.settings.triggers.webhook_urls:
            return Step()
        result = Result()
        for message in batch:
            self.loop.run_until_complete(self._deliver_one(message, result, now))
        return to_step(result)

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()

    async def _deliver_one(self, message: Incoming, result: Result, now: datetime) -> None:
        try:
            alert = Alert.from_record(self.core.serdes["alert"].decode(message.value, message.topic))
        except (WebhouseError, KeyError, TypeError, ValueError) as exc:
            self.core.dead_letter(result, message, "undecodable_alert", exc, now)
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
                body_of(alert), alert.alert_id, delivery.url, delivery.error or "failed", now
            )
            result.outputs.append(dead)

    def _sender(self) -> WebhookSender:
        if self.sender is None:
            t = self.settings.triggers
            self.sender = WebhookSender(
                t.webhook_urls, t.webhook_secret, RetryPolicy.from_settings(t), aiohttp.ClientSession(),
                on_attempt=self._attempted,
            )  # fmt: skip
        return self.sender

    def _attempted(self, seconds: float, failure: str | None) -> None:
        self.metrics.webhook_latency.observe(seconds)
        if failure:
            self.metrics.webhook_failures.labels(failure).inc()

    def close(self) -> None:
        if self.sender is not None:
            self.loop.run_until_complete(self.sender.session.close())
            self.sender = None
        self.loop.close()


def _group(settings: Settings, stage: str) -> str:
    return f"{settings.kafka.topic_prefix}-{settings.worker.app_id}-{stage}"


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    """Each trigger stage's consumer group and the topics it reads (to watch its progress)."""
    t = Topics.from_settings(settings.kafka)
    return {
        _group(settings, RouteStage.name): [t.enriched_events, t.sessions, t.identity],
        _group(settings, EvaluateStage.name): [t.triggers_input],
        _group(settings, DeliverStage.name): [t.alerts],
    }


def backlog_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The groups whose backlog bounds the worker's lead (``worker.downstream_backlog_max``), and what
    they read: route and evaluate, not deliver (a slow webhook endpoint must not hold the worker back)."""
    deliver = _group(settings, DeliverStage.name)
    return {group: tuple(inputs) for group, inputs in consumer_groups(settings).items() if group != deliver}


def stages(settings: Settings, metrics: TriggerMetrics) -> list[StageSpec]:
    """The trigger stages, each its own consumer group ``<prefix>-<worker app id>-<stage name>``."""
    return [
        StageSpec(RouteStage(settings, metrics), _group(settings, RouteStage.name)),
        StageSpec(EvaluateStage(settings, metrics), _group(settings, EvaluateStage.name)),
        StageSpec(DeliverStage(settings, metrics), _group(settings, DeliverStage.name), transactional=False),
    ]


def stages_for(settings: Settings, registry: CollectorRegistry | None = None) -> list[StageSpec]:
    """The worker's extension hook (``worker.extensions``): metrics on the worker's registry."""
    return stages(settings, TriggerMetrics(registry))
