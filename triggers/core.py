"""Bytes in, bytes out: the trigger stage between Kafka records and the pure engine.

Three steps, each a method over a batch, none touching Kafka (stages.py moves the
bytes; tests call these directly):

1. ``route``: enriched events and closed sessions (Avro) -> small JSON messages on the
   triggers topic, keyed by customer id, so one partition owns each customer's state.
   When an event or an identity link shows a device now belongs to a customer, a
   ``handover`` goes to the device's key first.
2. ``evaluate``: triggers-topic messages -> engine -> alerts (Avro, alerts topic),
   profile versions (Avro, compacted profiles topic) and the new state per key.
   ``handover`` takes the device's state out and sends it, as ``absorb``, to the
   customer's key, where the engine merges it.
3. ``sweep``: per triggers partition at its watermark (``pipeline.runtime.clock``: the
   slowest active enriched-events partition, from the progress records the worker writes
   and ``route`` passes on to every triggers partition): the states with a due absence
   window (an in-memory index, no scan), and once per event-time hour every state, for the
   scheduled rules. Inputs never close windows: a customer's inputs come from several
   partitions in no common order, so one input's time says nothing of what another holds.

Forgotten customers: ``apply_erasure`` takes an erasure record (``pipeline.erasure``, read from
the erasures topic by the adapter) and drops the states of the customer and its devices (profile,
history, open windows: no alert of theirs is decided after), tombstones their profiles, and from
then on ``route`` and ``evaluate`` drop every input of a forgotten id from before the erasure.
A new input after it starts a new, empty state.

Anything undecodable becomes a dead letter (stage ``triggers``) and is counted.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from pipeline.deadletter import DeadLetter
from pipeline.erasure import Erasure, Erasures
from pipeline.errors import WebhouseError
from pipeline.runtime.clock import END_MS, StageClock
from pipeline.runtime.control import WATERMARK, Progress, SourceState, control_kind
from pipeline.runtime.messages import Incoming
from pipeline.serde import make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics
from triggers.alerts import Alert
from triggers.engine import NOTHING, Engine, Outcome
from triggers.events import EventView, SessionView, event_view, session_view, to_ms
from triggers.metrics import TriggerMetrics
from triggers.profile import to_record
from triggers.ruleset import RuleSet
from triggers.state import CustomerState

log = logging.getLogger(__name__)
PROGRESS_KIND = "progress"
HANDOVER_MEMORY = 100_000
HOUR_MS = 3600 * 1000


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None  # None: by key


@dataclass(slots=True)
class Result:
    outputs: list[Output] = field(default_factory=list)
    states: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)  # key -> (partition, value)
    # triggers partition -> (source partition, its progress) read in this batch, in order
    progress: dict[int, list[tuple[str, Progress]]] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    # States touched by this batch, kept decoded until the batch ends (then ``states``).
    live: dict[bytes, tuple[int, CustomerState | None]] = field(default_factory=dict)

    def seal(self, index: Callable[[bytes, CustomerState | None], None] | None = None) -> Result:
        """Serialize each touched state once, however many inputs of the batch touched it."""
        for key, (partition, state) in self.live.items():
            if index is not None:
                index(key, state)
            self.states[key] = (partition, _json(state.to_dict()) if state is not None else None)
        self.live.clear()
        return self


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


class TriggerCore:
    def __init__(self, settings: Settings, rules: RuleSet, metrics: TriggerMetrics) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.engine = Engine(rules, settings.triggers)
        self.metrics = metrics
        url = settings.kafka.schema_registry_url
        self.serdes = {
            name: make_serde(name, url)
            for name in ("customer_event", "session", "identity_link", "alert", "profile")
        }
        self.dead_serde = make_serde("dead_letter", url)
        self._handed_over: OrderedDict[str, str] = OrderedDict()
        self.due: dict[
            bytes, tuple[int, int]
        ] = {}  # key -> (watermark its first window closes at, partition)
        self._last_hour: dict[int, int] = {}  # per partition: the event-time hour its last sweep reached
        self._indexed = False  # the due index is built (a full pass after each (re)assignment)
        self._flushed_at_end = False
        self.erasures = Erasures()
        self._partitioner = DefaultPartitioner()

    # -- 1. route -------------------------------------------------------------------------

    def route(self, batch: Iterable[Incoming], now: datetime) -> Result:
        result = Result()
        for message in batch:
            if control_kind(message.headers) == WATERMARK:
                self._broadcast(result, message)
                continue
            try:
                if message.topic == self.topics.identity:
                    link = self.serdes["identity_link"].decode(message.value, message.topic)
                    linked_at = to_ms(link["first_seen"])
                    if self._erased((link["anonymous_id"], link["customer_id"]), (linked_at,)):
                        continue
                    self._handover(result, link["anonymous_id"], link["customer_id"], linked_at)
                    continue
                if message.topic == self.topics.sessions:
                    # A session's end is not when its device was linked: events and links say that.
                    session = session_view(self.serdes["session"].decode(message.value, message.topic))
                    if self._erased((session.customer_id, session.anonymous_id), (session.start,)):
                        continue
                    result.outputs.append(self._input(session.customer_id, "session", session.to_dict()))
                    continue
                record = self.serdes["customer_event"].decode(message.value, message.topic)
                view = event_view(record)
                if view is None or view.is_bot:
                    continue
                if self._erased(_event_ids(view), (view.time, to_ms(record["received_at"]))):
                    continue
                self._handover(result, view.anonymous_id, view.customer_id, view.time)
                result.outputs.append(self._input(view.customer_id, "event", view.to_dict()))
            except (WebhouseError, KeyError, TypeError, ValueError) as exc:
                self.dead_letter(result, message, "undecodable", exc, now)
        return result

    def _broadcast(self, result: Result, message: Incoming) -> None:
        """A source partition's progress, to every triggers partition: each may hold a window
        whose closing waits on it. Sent after the inputs routed before it, so a triggers partition
        that reads it has read every input the source sent it before."""
        progress = Progress.from_bytes(message.value)
        body = {"source": f"{message.topic}/{message.partition}", "state": progress.state, "ms": progress.ms}
        value = _json({"kind": PROGRESS_KIND, "body": body})
        for partition in range(self.topics.partitions):
            result.outputs.append(Output(self.topics.triggers_input, None, value, partition))

    def clock_sources(self) -> frozenset[str]:
        """What each triggers partition's clock waits on: every enriched-events partition. Closed
        sessions and identity links start or move state but never answer an absence window."""
        return frozenset(f"{self.topics.enriched_events}/{p}" for p in range(self.topics.partitions))

    def clock(self, table: Mapping[bytes, bytes], partition: int) -> StageClock:
        """A triggers partition's clock as stored in the ``trigger-clocks`` table."""
        return StageClock.from_bytes(table.get(str(partition).encode()), self.clock_sources())

    def advance_clocks(
        self, table: MutableMapping[bytes, bytes], result: Result
    ) -> tuple[dict[int, tuple[bytes, bytes]], bool]:
        """Apply a batch's progress reports to the clocks in ``table``: what changed (to write to
        the changelog), and whether a watermark moved (so windows may be due)."""
        changed: dict[int, tuple[bytes, bytes]] = {}
        advanced = False
        for partition, reports in result.progress.items():
            clock = self.clock(table, partition)
            before = clock.watermark
            for source, progress in reports:
                clock.report(source, progress)
            advanced = advanced or clock.watermark != before
            key, value = str(partition).encode(), clock.to_bytes()
            table[key] = value
            changed[partition] = (key, value)
            if clock.watermark is not None:
                self.metrics.watermark.labels(str(partition)).set(min(clock.watermark, END_MS) / 1000)
        return changed, advanced

    def _input(self, key: str, kind: str, body: dict[str, Any]) -> Output:
        return Output(self.topics.triggers_input, key.encode(), _json({"kind": kind, "body": body}))

    def _handover(self, result: Result, anonymous_id: str | None, customer_id: str, at: int | None) -> None:
        if (
            not anonymous_id
            or anonymous_id == customer_id
            or self._handed_over.get(anonymous_id) == customer_id
        ):
            return
        self._handed_over[anonymous_id] = customer_id
        if len(self._handed_over) > HANDOVER_MEMORY:
            self._handed_over.popitem(last=False)
        result.outputs.append(self._input(anonymous_id, "handover", {"to": customer_id, "at": at}))

    # -- 2. evaluate ----------------------------------------------------------------------

    def evaluate(
        self, batch: Iterable[Incoming], stored: Callable[[bytes], bytes | None], now: datetime
    ) -> Result:
        """``stored(key)`` reads a state from the table; states changed earlier in the batch win."""
        result = Result()

        def load(key: bytes) -> CustomerState | None:
            if key in result.live:
                return result.live[key][1]
            raw = stored(key)
            return CustomerState.from_dict(json.loads(raw)) if raw else None

        for message in batch:
            if not message.key:  # only progress reports come without a customer key
                self._progress(result, message, now)
                continue
            try:
                envelope = json.loads(message.value)
                kind, body = envelope["kind"], envelope["body"]
                key = message.key
                if self._erased_input(key, kind, body):
                    continue
                if self._forward(result, message.partition, load(key), kind, body):
                    continue
                if kind == "event":
                    view = EventView.from_dict(body)
                    self._apply(result, message.partition, self.engine.on_event(load(key), view))
                elif kind == "session":
                    session = SessionView.from_dict(body)
                    self._apply(result, message.partition, self.engine.on_session(load(key), session))
                elif kind == "handover":
                    linked_at = body.get("at")
                    self._handover_state(result, message.partition, key, load(key), body["to"], linked_at)
                elif kind == "absorb":
                    other = CustomerState.from_dict(body["state"])
                    outcome = self.engine.absorb(load(key), other, key.decode(), body.get("at"))
                    self._apply(result, message.partition, outcome)
                else:
                    raise ValueError(f"unknown triggers input kind {kind!r}")
                self.metrics.inputs.labels(kind).inc()
            except (WebhouseError, KeyError, TypeError, ValueError) as exc:
                self.dead_letter(result, message, "bad_trigger_input", exc, now)
        return result.seal(self._index)

    def _forward(
        self, result: Result, partition: int, state: CustomerState | None, kind: str, body: dict[str, Any]
    ) -> bool:
        """An input for a device key already handed over goes on to its customer. One from before
        the link is first judged as the device (windows due before the link decided on what the
        device knew), and what stays open goes on as part of the device's state."""
        if state is None or state.moved_to is None or kind not in ("event", "session", "absorb"):
            return False
        target = state.moved_to
        self.metrics.inputs.labels("forwarded").inc()
        time = body.get("time") if kind == "event" else body.get("end")
        if kind == "absorb" or state.linked_at is None or time is None or time >= state.linked_at:
            forwarded = body if kind == "absorb" else {**body, "customer_id": target}
            result.outputs.append(self._input(target, kind, forwarded))
            return True
        device = state.device_copy()
        if kind == "event":
            outcome = self.engine.on_event(device, EventView.from_dict(body))
        else:
            outcome = self.engine.on_session(device, SessionView.from_dict(body))
        alerts = [*outcome.alerts, *self.engine.close_due(device, state.linked_at).alerts]
        self._emit_alerts(result, state.customer_id.encode(), alerts)
        moved = CustomerState.forwarding(state.customer_id, target, state.linked_at, device)
        result.live[state.customer_id.encode()] = (partition, moved)
        absorb = {"to": target, "state": device.to_dict(), "at": state.linked_at}
        result.outputs.append(self._input(target, "absorb", absorb))
        return True

    def _progress(self, result: Result, message: Incoming, now: datetime) -> None:
        try:
            envelope = json.loads(message.value)
            if envelope.get("kind") != PROGRESS_KIND:
                raise ValueError(f"triggers input of kind {envelope.get('kind')!r} without a key")
            body = envelope["body"]
            progress = Progress(SourceState(body["state"]), None if body["ms"] is None else int(body["ms"]))
            source = str(body["source"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.dead_letter(result, message, "missing_key", exc, now)
            return
        result.progress.setdefault(message.partition, []).append((source, progress))
        self.metrics.inputs.labels(PROGRESS_KIND).inc()

    def _apply(self, result: Result, partition: int, outcome: Outcome) -> None:
        state = outcome.state
        state.partition = partition
        key = state.customer_id.encode()
        self._emit_alerts(result, key, outcome.alerts)
        if outcome.profile_changed and state.moved_to is None:
            result.outputs.append(self._publish(state))
            state.unpublished = False
        result.live[key] = (partition, state)

    def _emit_alerts(self, result: Result, key: bytes, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            record = self.serdes["alert"].encode(alert.to_record(), self.topics.alerts)
            result.outputs.append(Output(self.topics.alerts, key, record))
            result.alerts.append(alert)

    def _publish(self, state: CustomerState, merged_into: str | None = None) -> Output:
        """The state's profile as its next numbered version (the number is kept in the state)."""
        state.profile = replace(state.profile, version=state.profile.version + 1)
        record = self.serdes["profile"].encode(to_record(state.profile, merged_into), self.topics.profiles)
        return Output(self.topics.profiles, state.profile.customer_id.encode(), record)

    def _handover_state(
        self,
        result: Result,
        partition: int,
        key: bytes,
        state: CustomerState | None,
        customer_id: str,
        linked_at: int | None,
    ) -> None:
        """Move a device's state to its customer. Windows already due when the device was linked
        are decided first, on what the device alone knew: the same answer whether the sweep or
        the hand-over was read first."""
        device = key.decode()
        if customer_id == device or (state is not None and state.moved_to == customer_id):
            return
        if state is not None and state.moved_to is None:
            if linked_at is not None:
                self._apply(result, partition, self.engine.close_due(state, linked_at))
            body = {"to": customer_id, "state": state.to_dict(), "at": linked_at}
            result.outputs.append(self._input(customer_id, "absorb", body))
            result.outputs.append(self._publish(state, merged_into=customer_id))
        # The device's state now lives with the customer; what comes later under the device's
        # key follows it there (``_forward``).
        result.live[key] = (partition, CustomerState.forwarding(device, customer_id, linked_at, state))

    def reset_index(self, clocks: Mapping[int, StageClock] | None = None) -> None:
        """After a (re)assignment: forget the due index; the next sweep is a full pass, rebuilding it.
        ``clocks`` are the owned partitions' stored clocks: the hours they had crossed were decided
        in the transactions that moved them, so scheduled passes go on from there."""
        self.due.clear()
        times = {p: c.event_time() for p, c in (clocks or {}).items()}
        self._last_hour = {p: now // HOUR_MS * HOUR_MS for p, now in times.items() if now is not None}
        self._indexed = False
        self._flushed_at_end = False

    # -- erasures -------------------------------------------------------------------------

    def apply_erasure(self, erasure: Erasure, stored: Callable[[bytes], bytes | None]) -> Result:
        """A customer was forgotten: its state and its devices' states go (tombstones for the
        ``trigger-states`` table in ``Result.states``), with their open windows, so no alert of
        theirs is decided after; their profiles are tombstoned on the profiles topic. Inputs of
        these ids from before the erasure are dropped from now on (``route``, ``evaluate``)."""
        ids = set(erasure.ids())
        ids.update(device for device, customer in self._handed_over.items() if customer in ids)
        devices = tuple(sorted(ids - {erasure.customer_id}))
        self.erasures.apply(Erasure(erasure.customer_id, devices, erasure.erased_at))
        for device in [d for d, c in self._handed_over.items() if d in ids or c in ids]:
            del self._handed_over[device]  # a device linked again after the erasure is handed over again
        result = Result()
        for name in sorted(ids):
            key = name.encode()
            if stored(key):
                result.live[key] = (self.partition_of(key), None)
            result.outputs.append(Output(self.topics.profiles, key, None))
        self.metrics.inputs.labels("erasure").inc()
        return result.seal(self._index)

    def partition_of(self, key: bytes) -> int:
        """The triggers partition of a key, as the producer's default partitioner places it."""
        partitions = list(range(self.topics.partitions))
        return int(self._partitioner(key, partitions, partitions))

    def _erased(self, ids: Iterable[str | None], times: Iterable[int | None]) -> bool:
        if self.erasures.covers(ids, times):
            self.metrics.inputs.labels("erased").inc()
            return True
        return False

    def _erased_input(self, key: bytes, kind: str, body: dict[str, Any]) -> bool:
        """A triggers-topic input of a forgotten id from before its erasure (a replay of the topic)."""
        if not len(self.erasures):
            return False
        ids: list[str | None] = [key.decode()]
        if kind == "event":
            view = EventView.from_dict(body)
            return self._erased([*ids, *_event_ids(view)], (view.time,))
        if kind == "session":
            return self._erased(
                [*ids, body.get("customer_id"), body.get("anonymous_id")], (body.get("start"),)
            )
        if kind == "handover":
            return self._erased([*ids, body.get("to")], (body.get("at"),))
        if kind == "absorb":
            return self._erased([*ids, body["state"].get("customer_id")], (body.get("at"),))
        return False

    # -- 3. sweep -------------------------------------------------------------------------

    def sweep(self, table: Mapping[bytes, bytes], clocks: Mapping[int, StageClock]) -> Result:
        """Per triggers partition, at its own watermark: due absence windows every time (from
        the index); scheduled rules for every customer at each event-time hour its clock crossed,
        decided *at* that hour (so how far one batch moved the clock changes nothing), with any
        profile change not yet published. Partitions without a watermark wait. After a restart the
        first sweep rebuilds the index only: the hours the stored clock had crossed were decided
        in the transaction that moved it. At the end of input every pending profile change is
        published: the latest version is then the final profile, whatever the read order."""
        result = Result()
        marks = {p: c.watermark for p, c in clocks.items() if c.watermark is not None}
        if not marks:
            return result
        hours = self._hours_crossed(clocks)
        every = self._every(clocks, hours)
        ended = self._ended(clocks)
        for key, raw in self._sweep_items(table, marks, every):
            state = CustomerState.from_dict(json.loads(raw)) if raw else None
            if state is None:
                self.due.pop(key, None)
            elif state.partition not in marks:
                self._index(key, state)  # its partition has no watermark yet: indexed, decided later
            elif state.partition is not None:
                partition = state.partition
                crossed = hours.get(partition, [])
                outcome = self._sweep_state(state, marks[partition], crossed, bool(crossed) or ended)
                self._apply(result, partition, outcome)
                if crossed and self._expired(outcome.state, crossed[-1]):
                    result.live[key] = (partition, None)
                    self.metrics.states_expired.inc()
                result.seal(self._index)
                if result.states[key][1] == raw and not outcome.alerts:
                    del result.states[key]  # nothing changed: no changelog write
        return result

    def _expired(self, state: CustomerState, hour: int) -> bool:
        """No event for ``triggers.state_ttl_days`` before this event-time hour, and no window open:
        the state goes (decided at an hour, so the same whatever the batches). Its last profile
        version stays on the profiles topic and in the webhouse; a later event starts a new state."""
        ttl_days = self.settings.triggers.state_ttl_days
        if not ttl_days or state.windows:
            return False
        last = state.linked_at if state.moved_to is not None else state.profile.last_event_at
        if last is None:
            last = state.profile.updated_at
        return last is not None and last < hour - ttl_days * 24 * HOUR_MS

    def _sweep_state(self, state: CustomerState, mark: int, hours: list[int], publish: bool) -> Outcome:
        """One customer at a sweep: the scheduled rules at each hour crossed (windows due by then
        first), the windows due at ``mark``; a pending profile change published if ``publish``."""
        alerts: list[Alert] = []
        for hour in hours:
            outcome = self.engine.sweep(state, min(hour, mark), at=hour)
            state, alerts = outcome.state, [*alerts, *outcome.alerts]
        outcome = self.engine.sweep(state, mark, scheduled=False)
        outcome = replace(outcome, alerts=(*alerts, *outcome.alerts))
        if publish and outcome.state.unpublished:
            outcome = replace(outcome, profile_changed=True)
        return outcome

    def _hours_crossed(self, clocks: Mapping[int, StageClock]) -> dict[int, list[int]]:
        """Per partition, the event-time hours (ms, in order) its clock passed since the last sweep.
        A partition whose clock was unknown at (re)assignment starts at its first clock's hour."""
        crossed: dict[int, list[int]] = {}
        for partition, clock in clocks.items():
            now = clock.event_time()
            if now is None:
                continue
            hour = now // HOUR_MS * HOUR_MS
            last = self._last_hour.setdefault(partition, hour)  # first heard: nothing crossed yet
            self._last_hour[partition] = max(last, hour)
            if hour > last:
                crossed[partition] = list(range(last + HOUR_MS, hour + 1, HOUR_MS))
        return crossed

    def _every(self, clocks: Mapping[int, StageClock], hours: Mapping[int, list[int]]) -> bool:
        """Whether this sweep visits every state: an hour crossed, the index to rebuild, or the end."""
        rebuild = not self._indexed
        self._indexed = True
        ended = self._ended(clocks)
        every = bool(hours) or rebuild or (ended and not self._flushed_at_end)
        self._flushed_at_end = ended and (every or self._flushed_at_end)
        return every

    @staticmethod
    def _ended(clocks: Mapping[int, StageClock]) -> bool:
        return all(c.watermark == END_MS for c in clocks.values())

    def _sweep_items(
        self, table: Mapping[bytes, bytes], marks: Mapping[int, int], every: bool
    ) -> list[tuple[bytes, bytes | None]]:
        """Every state (a full pass rebuilds the due index), else those with a window due."""
        if every:
            self.due.clear()
            return list(table.items())
        due = [key for key, (at, p) in list(self.due.items()) if p in marks and at <= marks[p]]
        return [(key, table.get(key)) for key in due]

    def _index(self, key: bytes, state: CustomerState | None) -> None:
        """Remember when this state's earliest window can fire: an absence window at its deadline
        plus the grace, a held marketing alert at its time (``Engine._close_windows``)."""
        if state is None or not state.windows or state.partition is None:
            self.due.pop(key, None)
            return
        grace_ms = self.settings.triggers.absence_grace_s * 1000
        due = min(w.deadline + (0 if w.absent == NOTHING else grace_ms) for w in state.windows)
        self.due[key] = (due, state.partition)

    # -- errors ---------------------------------------------------------------------------

    def dead_letter(
        self, result: Result, message: Incoming, reason: str, exc: Exception, now: datetime
    ) -> None:
        log.warning(
            "triggers: %s at %s/%d/%d: %s", reason, message.topic, message.partition, message.offset, exc
        )
        letter = DeadLetter(
            stage="triggers",
            reason=reason,
            detail=f"{type(exc).__name__}: {exc}",
            payload=message.value,
            failed_at=now,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
        )
        value = self.dead_serde.encode(letter.to_record(), self.topics.dead_letters)
        result.outputs.append(Output(self.topics.dead_letters, letter.dead_letter_id.encode(), value))
        self.metrics.dead_letters.labels("triggers", reason).inc()

    def delivery_dead_letter(
        self, alert_body: bytes, alert_id: str, url: str, reason: str, now: datetime
    ) -> Output:
        """A fired alert no webhook took: stage ``delivery``, the signed body as payload."""
        letter = DeadLetter(
            stage="delivery",
            reason=f"webhook_{reason}",
            detail=f"{url} did not accept alert {alert_id}: {reason}",
            payload=alert_body,
            failed_at=now,
            message_id=f"{alert_id}@{url}",  # one dead letter per alert and receiver, replay-stable
            headers={"url": url, "alert_id": alert_id, "topic": self.topics.alerts},
        )
        self.metrics.dead_letters.labels("delivery", letter.reason).inc()
        value = self.dead_serde.encode(letter.to_record(), self.topics.dead_letters)
        return Output(self.topics.dead_letters, letter.dead_letter_id.encode(), value)


def _event_ids(view: EventView) -> tuple[str | None, ...]:
    return (view.customer_id, view.anonymous_id, view.user_id)
