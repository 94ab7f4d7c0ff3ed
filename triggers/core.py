"""Bytes in, bytes out: the trigger stage between Kafka records and the pure engine.

Three steps, each a method over a batch, none touching Kafka (stages.py moves the
bytes; tests call these directly):

1. ``route``: enriched events and closed sessions (Avro) -> small JSON messages on the
   triggers topic, keyed by customer id, so one partition owns each customer's state.
   When an event or an identity link shows a device now belongs to a customer, a
   ``handover`` goes to the device's key first.
2. ``evaluate`` reads triggers-topic messages: progress reports move the partition's clocks,
   inputs are held (``triggers.hold``); ``release`` then applies, per partition, the held inputs
   the clock has passed, in (time, kind, key, id) order, through the engine -> alerts (Avro,
   alerts topic), profile versions (Avro, compacted profiles topic) and the new state per key.
   ``handover`` takes the device's state out and sends it, as ``absorb``, to the customer's key,
   where the engine merges it. After its own clock moved, a partition reports it to every
   partition (source ``triggers/N``): a customer's inputs wait for those reports too.
3. ``sweep``: per triggers partition at its marks, the states due (an in-memory index, no scan):
   an absence or held window due, or an event-time hour at which something of the state can
   change (``Engine.next_hour``: a day counter of the scheduled rules moving on, the dedupe memory
   to prune, the state's expiry, a profile change to publish); the hours between change nothing
   and are skipped. Inputs never close windows: each state's windows and hours due before an
   input are decided before the input is applied (``_prepare``), the rest when the marks pass them.

Forgotten customers: ``apply_erasure`` takes an erasure record (``pipeline.erasure``, read from
the erasures topic by the adapter) and drops the states of the customer and its devices (profile,
history, open windows: no alert of theirs is decided after), tombstones their profiles, and from
then on ``route`` and ``evaluate`` drop every input of a forgotten id from before the erasure.
A new input after it starts a new, empty state.

Anything undecodable becomes a dead letter (stage ``triggers``) and is counted.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from pipeline import fast_json
from pipeline.deadletter import DeadLetter
from pipeline.erasure import Erasure, Erasures
from pipeline.errors import WebhouseError
from pipeline.event_view import EventView, event_view, header_view, to_ms, view_json
from pipeline.immutable import immutable
from pipeline.runtime.clock import END_MS, StageClock
from pipeline.runtime.control import WATERMARK, Progress, SourceState, control_kind
from pipeline.runtime.messages import Incoming
from pipeline.serde import make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics
from triggers.alerts import Alert
from triggers.engine import HOUR_MS, NOTHING, Engine, Outcome, hour_after
from triggers.events import SessionView, session_view
from triggers.hold import BatchKeys, Held, HeldInputs, held_of, stored_size
from triggers.metrics import TriggerMetrics
from triggers.profile import to_record
from triggers.ruleset import RuleSet
from triggers.state import CustomerState

log = logging.getLogger(__name__)
PROGRESS_KIND = "progress"
HOP_SOURCE = "triggers/"  # a triggers partition's report of how far it has handed device states on
HANDOVER_MEMORY = 100_000
PASS_READ = 256  # states a full pass reads at a time (then checks how much the step holds)


@immutable
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
    held: list[tuple[int, Held]] = field(default_factory=list)  # inputs read, to hold (partition, input)
    released: list[tuple[int, Held]] = field(default_factory=list)  # held inputs applied

    def seal(
        self,
        fit: Callable[[CustomerState], bytes],
        index: Callable[[bytes, CustomerState | None], None] | None = None,
    ) -> Result:
        """Serialize each touched state once, however many inputs of the batch touched it."""
        for key, (partition, state) in self.live.items():
            if index is not None:
                index(key, state)
            self.states[key] = (partition, fit(state) if state is not None else None)
        self.live.clear()
        return self


@immutable
class Due:
    """When a state next needs the sweep: its earliest window's closing time, the next hour at
    which something of it can change (``TriggerCore._next_visit``); either may be None."""

    window: int | None
    hour: int | None
    partition: int
    device: bool

    @property
    def earliest(self) -> int:
        """No mark before this reaches it (an hour is reached no earlier than its mark)."""
        return min(t for t in (self.window, self.hour) if t is not None)

    def indexed_as(self, earliest: int, queue: tuple[int, bool]) -> bool:
        """Whether an index entry (its time, its queue: partition and class) is this one's."""
        return (self.earliest, self.partition, self.device) == (earliest, *queue)

    def reached(self, mark: Marks) -> bool:
        decided = mark.decided(self.device)
        if decided is None:
            return False
        if self.window is not None and self.window <= decided:
            return True
        upto = decided if mark.now is None else min(decided, mark.now)
        return self.hour is not None and self.hour <= upto < END_MS


@immutable
class Marks:
    """How far a triggers partition may apply its held inputs: those of devices before ``device``,
    those of customers before ``customer`` (None: not yet); ``now`` caps the scheduled hours (after
    an end of input the marks are the end of time, ``now`` the latest real time)."""

    device: int | None
    customer: int | None
    now: int | None

    def of(self, device: bool) -> int | None:
        return self.device if device else self.customer

    def decided(self, device: bool) -> int | None:
        """What is decided through: windows due at or before it, hours up to it."""
        mark = self.of(device)
        return mark if mark is None or mark >= END_MS else mark - 1


_SORTED_COMPACT = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # made once, not per call


def _json(data: dict[str, Any]) -> bytes:
    return _SORTED_COMPACT.encode(data).encode()


# A customer's stored state past this size gives up, half at a time and in this order, until it
# fits: its oldest past events, the categories it bought least, its oldest products bought, its
# oldest anonymous ids, the oldest of the order ids it remembers against retries (an order id
# forgotten this way would count again if retried). The history is bounded in count
# (``triggers.history_max_events``) but not in bytes: 300 Product Viewed events listing 250
# products each (a list page tracked as a product view) made a state of over 1 MB, past the
# 1,000,000 bytes Kafka takes in one record, and the evaluate stage stopped on it, again after
# each restart. The profile's categories are bounded by nothing, its products, anonymous ids and
# order ids by count only, and each can be as long as an event allows (32 KB at the collector):
# a client sending long or many distinct ones stopped it the same way. Consent purposes too:
# last, those no guardrail reads (outside ``triggers.consent_purposes`` and the rules' own) go;
# the others never do.
STATE_BYTES_MAX = 512 * 1024


def _drop_oldest_history(state: CustomerState) -> bool:
    if not state.history:
        return False
    del state.history[: max(1, len(state.history) // 2)]
    return True


def _drop_least_bought(state: CustomerState) -> bool:
    bought = state.profile.categories_bought
    if not bought:
        return False
    ranked = sorted(bought.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(sorted(ranked[: len(ranked) // 2]))
    state.profile = state.profile.changed({"categories_bought": kept})
    return True


def _drop_oldest_products(state: CustomerState) -> bool:
    products = state.profile.products_bought
    if not products:
        return False
    state.profile = state.profile.changed(
        {"products_bought": products[len(products) // 2 + len(products) % 2 :]}
    )
    return True


def _drop_oldest_anonymous_ids(state: CustomerState) -> bool:
    ids = state.profile.anonymous_ids
    if not ids:
        return False
    state.profile = state.profile.changed({"anonymous_ids": ids[len(ids) // 2 + len(ids) % 2 :]})
    return True


def _drop_oldest_order_ids(state: CustomerState) -> bool:
    if not state.order_ids:
        return False
    del state.order_ids[: max(1, len(state.order_ids) // 2)]
    return True


_TRIMS = (
    _drop_oldest_history,
    _drop_least_bought,
    _drop_oldest_products,
    _drop_oldest_anonymous_ids,
    _drop_oldest_order_ids,
)


def _drop_unread_consents(state: CustomerState, read: frozenset[str]) -> bool:
    consent = {purpose: granted for purpose, granted in state.profile.consent.items() if purpose in read}
    changes = [change for change in state.consents if change[1] in read]
    if len(consent) == len(state.profile.consent) and len(changes) == len(state.consents):
        return False
    state.profile = state.profile.changed({"consent": consent})
    state.consents = changes
    return True


def state_bytes(state: CustomerState, read_purposes: frozenset[str]) -> bytes:
    """The state as stored: sorted compact JSON, within ``STATE_BYTES_MAX`` unless the consents
    of ``read_purposes`` (those a guardrail may ask for) alone pass it. What is dropped to fit is
    dropped from ``state`` itself, so memory and store agree."""
    data = _json(state.to_dict())
    for trim in _TRIMS:
        while len(data) > STATE_BYTES_MAX and trim(state):
            data = _json(state.to_dict())
    if len(data) > STATE_BYTES_MAX and _drop_unread_consents(state, read_purposes):
        data = _json(state.to_dict())
    return data


def read_purposes(settings: Settings, rules: RuleSet) -> frozenset[str]:
    """The consent purposes a guardrail may ask for: the vocabulary and what the rules name
    (the worker loads rules outside the vocabulary too; only `webhouse triggers validate` refuses
    them)."""
    return frozenset(settings.triggers.consent_purposes) | {r.consent for r in rules.rules if r.consent}


def _nothing_stored(key: bytes) -> bytes | None:
    """No ``trigger-pending`` store: nothing was parked (tools that run the core alone)."""
    return None


class TriggerCore:
    def __init__(self, settings: Settings, rules: RuleSet, metrics: TriggerMetrics) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.engine = Engine(rules, settings.triggers)
        self.metrics = metrics
        self._read_purposes = read_purposes(settings, rules)
        url = settings.kafka.schema_registry_url
        self.serdes = {
            name: make_serde(name, url)
            for name in ("customer_event", "session", "identity_link", "alert", "profile")
        }
        self.dead_serde = make_serde("dead_letter", url)
        self._handed_over: OrderedDict[str, str] = OrderedDict()
        self.due: dict[bytes, Due] = {}
        # Per partition and class, the index's entries by earliest time (a heap; an entry that no
        # longer matches ``due`` is dropped when it comes up).
        self._queues: dict[tuple[int, bool], list[tuple[int, bytes]]] = {}
        self._queued = 0
        self._indexed = False  # the due index is built (a full pass after each (re)assignment)
        self._flushed_at_end = False
        # A full pass goes on over as many steps as it takes for each to hold at most
        # ``triggers.sweep_chunk`` changed states, so a step (one transaction) stays small whatever
        # the number of states; a pass wanted while one is under way starts when it ends (a
        # restarted one would starve the states at its end).
        self._pass: deque[bytes] = deque()
        self._pass_wanted = False
        self.erasures = Erasures()
        self._partitioner = DefaultPartitioner()
        self.held = HeldInputs()
        self._gap_ms = settings.worker.session.inactivity_gap_s * 1000

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
                self._route_event(result, message)
            except (WebhouseError, KeyError, TypeError, ValueError) as exc:
                self.dead_letter(result, message, "undecodable", exc, now)
        return result

    def _route_event(self, result: Result, message: Incoming) -> None:
        """An enriched event as its customer's input. The view comes from the headers the worker
        wrote with it (``pipeline.event_view``), else from decoding the event; both give the same
        bytes on the triggers topic (``view_json``)."""
        carried = header_view(message.headers)
        if carried is None:
            record = self.serdes["customer_event"].decode(message.value, message.topic)
            carried = view_json(event_view(record)), to_ms(record["received_at"]) or 0
        body, received = carried
        if body == b"null":  # nobody's, or a bot's
            return
        fields = fast_json.loads(body)
        customer_id, anonymous_id, at = fields["customer_id"], fields.get("anonymous_id"), fields["time"]
        if self._erased((customer_id, anonymous_id, fields.get("user_id")), (at, received)):
            return
        self._handover(result, anonymous_id, customer_id, at)
        value = b'{"body":%b,"kind":"event"}' % body  # what _json({"kind": "event", "body": ...}) means
        result.outputs.append(Output(self.topics.triggers_input, customer_id.encode(), value))

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
        """What each triggers partition's clock waits on: every enriched-events and every sessions
        partition (the worker reports its watermark on both, after what it released there)."""
        partitions = range(self.topics.partitions)
        topics = (self.topics.enriched_events, self.topics.sessions)
        return frozenset(f"{topic}/{p}" for topic in topics for p in partitions)

    def hop_sources(self) -> frozenset[str]:
        """What a partition's customer inputs also wait on: every triggers partition's report of
        how far it has handed device states on (absorbs and forwards come through the topic)."""
        return frozenset(f"{HOP_SOURCE}{p}" for p in range(self.topics.partitions))

    def clock(self, table: Mapping[bytes, bytes], partition: int) -> StageClock:
        """A triggers partition's clock as stored in the ``trigger-clocks`` table."""
        return StageClock.from_bytes(table.get(str(partition).encode()), self.clock_sources())

    def hop_clock(self, table: Mapping[bytes, bytes], partition: int) -> StageClock:
        """A triggers partition's clock over the other partitions' hand-over reports."""
        return StageClock.from_bytes(table.get(b"%d/hops" % partition), self.hop_sources())

    def advance_clocks(
        self, table: MutableMapping[bytes, bytes], result: Result
    ) -> tuple[dict[bytes, tuple[int, bytes]], bool]:
        """Apply a batch's progress reports to the clocks in ``table``: what changed (key ->
        (partition, value), to write to the changelog), and whether a watermark moved. A partition
        whose own clock moved reports it to every partition (``Result.outputs``): the device
        inputs before it are released in this step, so their hand-overs are on their way."""
        changed: dict[bytes, tuple[int, bytes]] = {}
        advanced = False
        for partition, reports in result.progress.items():
            clocks = {False: self.clock(table, partition), True: self.hop_clock(table, partition)}
            before = {hop: c.watermark for hop, c in clocks.items()}
            for source, progress in reports:
                clocks[source.startswith(HOP_SOURCE)].report(source, progress)
            for hop, clock in clocks.items():
                advanced = advanced or clock.watermark != before[hop]
                key = b"%d/hops" % partition if hop else str(partition).encode()
                value = clock.to_bytes()
                if table.get(key) != value:
                    table[key] = value
                    changed[key] = (partition, value)
            own = clocks[False]
            if own.watermark != before[False] and own.watermark is not None:
                self.metrics.watermark.labels(str(partition)).set(min(own.watermark, END_MS) / 1000)
                self._report_hops(result, partition, own)
        return changed, advanced

    def _report_hops(self, result: Result, partition: int, clock: StageClock) -> None:
        assert clock.watermark is not None
        ended = clock.watermark >= END_MS
        state = SourceState.ENDED if ended else SourceState.ACTIVE
        ms = clock.event_time() if ended else clock.watermark
        body = {"source": f"{HOP_SOURCE}{partition}", "state": state.value, "ms": ms}
        value = _json({"kind": PROGRESS_KIND, "body": body})
        for target in range(self.topics.partitions):
            result.outputs.append(Output(self.topics.triggers_input, None, value, target))

    def marks(self, table: Mapping[bytes, bytes], partitions: Iterable[int]) -> dict[int, Marks]:
        """Per partition, how far each class of input may be applied (``triggers.hold``)."""
        marks: dict[int, Marks] = {}
        for partition in partitions:
            own, hops = self.clock(table, partition), self.hop_clock(table, partition)
            device = own.watermark
            customer = None if device is None or hops.watermark is None else min(device, hops.watermark)
            marks[partition] = Marks(device, customer, own.event_time())
        return marks

    def _input(self, key: str, kind: str, body: dict[str, Any]) -> Output:
        return Output(self.topics.triggers_input, key.encode(), _json({"kind": kind, "body": body}))

    def forget_handovers(self) -> None:
        """The memory of hand-overs sent only saves repeating them (a repeat changes nothing);
        it must not outlive the outputs it stands for (``RouteStage.assign``)."""
        self._handed_over.clear()

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

    def evaluate(self, batch: Iterable[Incoming], now: datetime) -> Result:
        """Read a batch of the triggers topic: progress reports to ``Result.progress``, inputs to
        ``Result.held`` (applied later, by ``release``, once the clock has passed them)."""
        result = Result()
        records = BatchKeys()  # the records its inputs held past this step go to
        for message in batch:
            if not message.key:  # only progress reports come without a customer key
                self._progress(result, message, now)
                continue
            try:
                envelope = fast_json.loads(message.value)
                kind, body = envelope["kind"], envelope["body"]
                held = held_of(message.key, message.value, kind, body, self._gap_ms)
                held = held._replace(batch=records.key(message.partition, message.offset, stored_size(held)))
            except (WebhouseError, KeyError, TypeError, ValueError, AttributeError) as exc:
                self.dead_letter(result, message, "bad_trigger_input", exc, now)
                continue
            result.held.append((message.partition, held))
            self.held.add(message.partition, held)
        return result

    def release(
        self,
        marks: Mapping[int, Marks],
        stored: Callable[[bytes], bytes | None],
        now: datetime,
        pending: Callable[[bytes], bytes | None] = _nothing_stored,
    ) -> Result:
        """Apply, per partition and class, the held inputs the marks have passed, in order. Before
        each, its state's windows due and scheduled hours up to just before the input are decided,
        so what a window or an hour sees never depends on how far one batch got. ``pending``: the
        ``trigger-pending`` store, where parked held inputs are read back from (``triggers.hold``)."""
        result = Result()
        applied: Counter[str] = Counter()  # by kind: the metric is counted once per kind and step
        for partition, mark in sorted(marks.items()):
            for device in (True, False):
                for held in self.held.release(partition, device, mark.of(device), pending):
                    result.released.append((partition, held))
                    self._apply_held(result, partition, held, mark, stored, now, applied)
        for kind, count in applied.items():
            self.metrics.inputs.labels(kind).inc(count)
        return result.seal(self._fit, self._index)

    def _load(
        self, result: Result, key: bytes, stored: Callable[[bytes], bytes | None]
    ) -> CustomerState | None:
        if key in result.live:
            return result.live[key][1]
        raw = stored(key)
        return CustomerState.from_dict(fast_json.loads(raw)) if raw else None

    def _apply_held(self, result: Result, partition: int, held: Held, mark: Marks,
                    stored: Callable[[bytes], bytes | None], now: datetime,
                    applied: Counter[str]) -> None:  # fmt: skip
        key, raw = held.key, held.envelope
        envelope = fast_json.loads(raw)
        kind, body = envelope["kind"], envelope["body"]
        try:
            if self._erased_input(key, kind, body):
                return
            state = self._load(result, key, stored)
            if state is not None:
                state = self._prepare(result, key, state, max(held.at - 1, 0), mark.now, ended=False)
            if self._forward(result, partition, state, kind, body):
                return
            if kind == "event":
                self._apply(result, partition, self.engine.on_event(state, EventView.from_dict(body)))
            elif kind == "session":
                self._apply(result, partition, self.engine.on_session(state, SessionView.from_dict(body)))
            elif kind == "handover":
                self._handover_state(result, partition, key, state, body["to"], body.get("at"))
            else:
                other = CustomerState.from_dict(body["state"])
                self._apply(result, partition, self.engine.absorb(state, other, key.decode(), body.get("at")))
            applied[kind] += 1
        except (WebhouseError, KeyError, TypeError, ValueError) as exc:
            message = Incoming(self.topics.triggers_input, partition, -1, key, raw)
            self.dead_letter(result, message, "bad_trigger_input", exc, now)
            return
        live = result.live.get(key)
        if live is not None and live[1] is not None:
            live[1].device = held.device
            if live[1].hour is None:
                live[1].hour = held.at // HOUR_MS * HOUR_MS

    def _prepare(self, result: Result, key: bytes, state: CustomerState, mark: int, now: int | None,
                 ended: bool) -> CustomerState | None:  # fmt: skip
        """Decide what is due for one state through ``mark``: its scheduled hours (up to ``now``,
        the latest real time) with the windows due by each, then the windows due at ``mark``; a
        pending profile change is published at an hour or at the end. None: the state expired."""
        partition = state.partition if state.partition is not None else self.partition_of(key)
        upto = mark if now is None else min(mark, now)
        if state.hour is None:
            state.hour = upto // HOUR_MS * HOUR_MS
            result.live.setdefault(key, (partition, state))  # the hour it starts from is kept
        through = upto // HOUR_MS * HOUR_MS if 0 <= upto < END_MS else None
        crossed = through is not None and through > state.hour
        if not crossed and not ended and not state.windows:
            return state
        outcome = self._sweep_state(state, mark, through if crossed else None, crossed or ended)
        self._apply(result, partition, outcome)
        if crossed and through is not None:
            outcome.state.hour = through
            if self._expired(outcome.state, through):
                result.live[key] = (partition, None)
                self.metrics.states_expired.inc()
                return None
        return outcome.state

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
        moved = CustomerState.forwarding(state.customer_id, target, state.linked_at, device, partition)
        result.live[state.customer_id.encode()] = (partition, moved)
        absorb = {"to": target, "state": self._handed_over_state(device), "at": state.linked_at}
        result.outputs.append(self._input(target, "absorb", absorb))
        return True

    def _progress(self, result: Result, message: Incoming, now: datetime) -> None:
        try:
            envelope = fast_json.loads(message.value)
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

    def _fit(self, state: CustomerState) -> bytes:
        """The state as stored, trimmed to fit (``state_bytes``)."""
        return state_bytes(state, self._read_purposes)

    def _handed_over_state(self, state: CustomerState) -> dict[str, Any]:
        """A device's state as its hand-over (``absorb``) carries it: trimmed as it would be
        stored. It grew within the batch that hands it over, and was never stored at that size."""
        self._fit(state)
        return state.to_dict()

    def _publish(self, state: CustomerState, merged_into: str | None = None) -> Output:
        """The state's profile as its next numbered version (the number is kept in the state). A
        profile past the state's bound grew within this step, which stores the state trimmed: it is
        trimmed now, as the state will be, so the record stays one Kafka takes."""
        state.profile = state.profile.changed({"version": state.profile.version + 1})
        record = self.serdes["profile"].encode(to_record(state.profile, merged_into), self.topics.profiles)
        if len(record) > STATE_BYTES_MAX:
            self._fit(state)  # its JSON is at least as long as the profile's Avro
            record = self.serdes["profile"].encode(
                to_record(state.profile, merged_into), self.topics.profiles
            )
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
            body = {"to": customer_id, "state": self._handed_over_state(state), "at": linked_at}
            result.outputs.append(self._input(customer_id, "absorb", body))
            result.outputs.append(self._publish(state, merged_into=customer_id))
        # The device's state now lives with the customer; what comes later under the device's
        # key follows it there (``_forward``).
        marker = CustomerState.forwarding(device, customer_id, linked_at, state, partition)
        result.live[key] = (partition, marker)

    def reload(self, rules: RuleSet) -> None:
        """New rules: every state is visited again (a full pass), so that the scheduled rules
        look at each at its next hour (``Engine.schedule_version`` changed)."""
        self.engine.reload(rules)
        self._read_purposes = read_purposes(self.settings, rules)
        self.reset_index()

    def reset_index(self) -> None:
        """After a (re)assignment: forget the due index; the next sweep is a full pass, rebuilding
        it (each state knows the last hour decided for it)."""
        self.due.clear()
        self._queues = {}
        self._queued = 0
        self._indexed = False
        self._flushed_at_end = False
        self._pass.clear()
        self._pass_wanted = False

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
        return result.seal(self._fit, self._index)

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

    def sweep(self, table: Mapping[bytes, bytes], marks: Mapping[int, Marks]) -> Result:
        """Per triggers partition, at its marks (``release``): the states the index says are due (a
        window to close, an hour that can change them), each decided through the marks
        (``_prepare``). Partitions without a mark wait. After an assignment or a rules reload the
        first sweeps are a full pass that rebuilds the index; each state's own last hour says which
        hours were decided already. At the end of input every pending profile change is published:
        the latest version is then the final profile."""
        result = Result()
        if not any(m.device is not None for m in marks.values()):
            return result
        every = self._every(marks)
        ended = self._ended(marks)
        items = self._due_items(table, marks, self.settings.triggers.sweep_chunk)
        while True:
            self._sweep_some(result, items, marks, ended)
            # The full pass goes on until this step holds ``triggers.sweep_chunk`` changed states
            # (one transaction stays small) or the pass is over: an empty step means nothing left.
            items = self._pass_items(table, every)
            every = False
            if not items or len(result.states) >= self.settings.triggers.sweep_chunk:
                break
        if items:  # not visited in this step: first in the next one
            self._pass.extendleft(reversed([key for key, _ in items]))
        return result

    def _sweep_some(self, result: Result, items: list[tuple[bytes, bytes | None]], marks: Mapping[int, Marks],
                    ended: bool) -> None:  # fmt: skip
        for key, stored in items:
            # Visited already in this step (due, then met again by the pass): as it is now.
            raw = result.states[key][1] if key in result.states else stored
            state = CustomerState.from_dict(fast_json.loads(raw)) if raw else None
            if state is None:
                self.due.pop(key, None)
                continue
            if state.partition is None:  # a forwarding marker written before markers kept theirs
                state.partition = self.partition_of(key)
            owner = marks.get(state.partition)
            mark = owner.decided(state.device) if owner is not None else None
            if owner is None or mark is None:
                self._index(key, state)  # its partition has no mark yet: indexed, decided later
                continue
            prepared = self._prepare(result, key, state, mark, owner.now, ended)
            if key not in result.live:
                self._index(key, prepared)  # unchanged: indexed as it is (a full pass builds the index)
            result.seal(self._fit, self._index)
            if prepared is not None and result.states.get(key, (0, None))[1] == stored:
                del result.states[key]  # nothing changed: no changelog write

    def _expired(self, state: CustomerState, hour: int) -> bool:
        """No event for ``triggers.state_ttl_days`` before this event-time hour, and no window open:
        the state goes (decided at an hour, so the same whatever the batches). Its last profile
        version stays on the profiles topic and in the webhouse; a later event starts a new state."""
        ttl_days = self.settings.triggers.state_ttl_days
        if not ttl_days or state.windows:
            return False
        last = _last_activity(state)
        return last is not None and last < hour - ttl_days * 24 * HOUR_MS

    def _sweep_state(self, state: CustomerState, mark: int, through: int | None, publish: bool) -> Outcome:
        """One customer at a sweep: the scheduled rules at each hour up to ``through`` at which they
        can decide something (``Engine.next_hour``; windows due by then first), the windows due at
        ``mark``; a pending profile change published if ``publish``."""
        alerts: list[Alert] = []
        hour = None if through is None or state.hour is None else self.engine.next_hour(state, state.hour)
        while hour is not None and through is not None and hour <= through:
            outcome = self.engine.sweep(state, min(hour, mark), at=hour)
            state, alerts = outcome.state, [*alerts, *outcome.alerts]
            hour = self.engine.next_hour(state, hour)
        outcome = self.engine.sweep(state, mark, scheduled=False)
        outcome = replace(outcome, alerts=(*alerts, *outcome.alerts))
        if publish and outcome.state.unpublished:
            outcome = replace(outcome, profile_changed=True)
        return outcome

    def _every(self, marks: Mapping[int, Marks]) -> bool:
        """Whether this sweep visits every state: the index is to be rebuilt, or the end came."""
        rebuild = not self._indexed
        self._indexed = True
        ended = self._ended(marks)
        every = rebuild or (ended and not self._flushed_at_end)
        self._flushed_at_end = ended and (every or self._flushed_at_end)
        return every

    @staticmethod
    def _ended(marks: Mapping[int, Marks]) -> bool:
        return bool(marks) and all(m.device == END_MS and m.customer == END_MS for m in marks.values())

    @property
    def pass_pending(self) -> bool:
        """A full pass is under way or wanted: the next sweeps go on with it."""
        return bool(self._pass) or self._pass_wanted

    def _due_items(
        self, table: Mapping[bytes, bytes], marks: Mapping[int, Marks], most: int
    ) -> list[tuple[bytes, bytes | None]]:
        """The states due at these marks, from the index, earliest first across the partitions and
        classes, at most ``most``: the others stay indexed and come in the next steps, so one step
        stays short however many states a jump of the clock (a catch-up after downtime, a replay)
        makes due at once. Visiting a state later changes no decision: each decides its hours in
        order, and an input first decides what is due before it."""
        queues = self._marked_queues(marks)
        heads = [(queue[0][0], key) for key, (queue, _, decided) in queues.items() if queue[0][0] <= decided]
        heapq.heapify(heads)
        due: dict[bytes, None] = {}
        kept: list[tuple[list[tuple[int, bytes]], tuple[int, bytes]]] = []
        while heads and len(due) < most:
            key = heapq.heappop(heads)[1]
            queue, mark, decided = queues[key]
            entry = heapq.heappop(queue)
            self._queued -= 1
            current = self.due.get(entry[1])
            if current is not None and current.indexed_as(entry[0], key):  # else re-indexed since
                if current.reached(mark):
                    due[entry[1]] = None
                kept.append((queue, entry))  # until the visit re-indexes it
            if queue and queue[0][0] <= decided:
                heapq.heappush(heads, (queue[0][0], key))
        for queue, entry in kept:
            heapq.heappush(queue, entry)
            self._queued += 1
        return [(key, table.get(key)) for key in due]

    def _marked_queues(
        self, marks: Mapping[int, Marks]
    ) -> dict[tuple[int, bool], tuple[list[tuple[int, bytes]], Marks, int]]:
        """The index's non-empty queues whose partition has a mark for their class: each with its
        mark and the time decided through."""
        queues = {}
        for key, queue in self._queues.items():
            mark = marks.get(key[0])
            decided = mark.decided(key[1]) if mark is not None else None
            if queue and mark is not None and decided is not None:
                queues[key] = (queue, mark, decided)
        return queues

    def _pass_items(self, table: Mapping[bytes, bytes], every: bool) -> list[tuple[bytes, bytes | None]]:
        """The full pass's next few states (a pass starts when wanted and none is under way). A
        state's decisions do not depend on when it is visited (each decides its hours in order, and
        an input first decides what is due before it), only how soon an alert comes out."""
        self._pass_wanted = self._pass_wanted or every
        if self._pass_wanted and not self._pass:
            self._pass = deque(table)
            self._pass_wanted = False
        size = min(PASS_READ, len(self._pass))
        return [(key, table.get(key)) for key in (self._pass.popleft() for _ in range(size))]

    def _index(self, key: bytes, state: CustomerState | None) -> None:
        """Remember when this state next needs the sweep: its earliest window can fire (an
        absence window at its deadline plus the grace, a held marketing alert at its time:
        ``Engine._close_windows``), or an hour can change it (``_next_visit``)."""
        if state is None or state.partition is None:
            self.due.pop(key, None)
            return
        window = None
        if state.windows:
            grace_ms = self.settings.triggers.absence_grace_s * 1000
            window = min(w.deadline + (0 if w.absent == NOTHING else grace_ms) for w in state.windows)
        hour = self._next_visit(state)
        if window is None and hour is None:
            self.due.pop(key, None)
            return
        due = Due(window, hour, state.partition, state.device)
        if self.due.get(key) == due:
            return
        self.due[key] = due
        heapq.heappush(self._queues.setdefault((due.partition, due.device), []), (due.earliest, key))
        self._queued += 1
        if self._queued > 2 * len(self.due) + 10_000:
            self._requeue()

    def _requeue(self) -> None:
        """Drop the entries left behind by re-indexing (the heaps hold only ``due`` again)."""
        self._queues = {}
        for key, due in self.due.items():
            self._queues.setdefault((due.partition, due.device), []).append((due.earliest, key))
        for queue in self._queues.values():
            heapq.heapify(queue)
        self._queued = len(self.due)

    def _next_visit(self, state: CustomerState) -> int | None:
        """The first hour after the state's last decided one at which a sweep can change it: what
        the rules can decide (``Engine.next_hour``), a profile change to publish, its expiry."""
        if state.hour is None:
            return 0
        hours = [self.engine.next_hour(state, state.hour)]
        if state.unpublished:
            hours.append(state.hour + HOUR_MS)
        ttl_days = self.settings.triggers.state_ttl_days
        last = _last_activity(state)
        if ttl_days and not state.windows and last is not None:
            expiry = last + ttl_days * 24 * HOUR_MS
            hours.append(max(hour_after(expiry), state.hour + HOUR_MS))
        return min((h for h in hours if h is not None), default=None)

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


def _last_activity(state: CustomerState) -> int | None:
    """What the state's expiry counts from: its link for a handed-over device, else its last event."""
    last = state.linked_at if state.moved_to is not None else state.profile.last_event_at
    return state.profile.updated_at if last is None else last


def _event_ids(view: EventView) -> tuple[str | None, ...]:
    return (view.customer_id, view.anonymous_id, view.user_id)
