"""The worker's hot path: raw messages in, output messages and state writes out.

Per raw event, in order: decode (once) -> enrich -> stitch identity -> sessionize ->
outputs. Bots and events with no usable id are enriched and passed straight on (no
session), and so are identify/alias/group calls and e-mail events without an anonymous
id (a CRM sync, an ESP's webhooks: no visit); their key (crawler id, user id) still
remembers their ids, so a client's retry is dropped as within a visit. A session's key
is the anonymous id, else the user id: a server-side event with only a user id joins the open visit of a
device signed in as that customer on the same partition, if there is one, else the
customer's own visit (docs/identity.md). Every other event goes on at once with its session
key (``enrichment.session_key``), and what the sessionizer needs of it waits in the key's state
until the partition watermark (largest event time seen on the partition, capped by the collector's
clock, minus the allowed lateness) releases it into its visit; the visit's record names its key,
first and last event, which is how the webhouse finds an event's visit (``events_sessioned``).
Anything that fails on one event becomes a dead letter; nothing raises out of ``process``.

``WorkerCore`` keeps live device objects in memory and reports, per batch, which
device records changed; the stage (``processors.worker.stage``) hands those to the
runtime, which writes them to the ``devices`` store with the outputs and offsets, and
rebuilds the core from that store after a restart or rebalance (``load``). Outputs
are keyed by device and sent to the *same partition number* as their input, so every
topic stays co-partitioned with the raw topic whatever partitioner the producers used.

Forgotten customers (``webhouse forget``): ``apply_erasure`` takes an erasure record (read from
the erasures topic by the stage), drops the customer's devices and what they held (open
visits, waiting events, links), and from then on ``process`` drops every event of a forgotten
id that happened, or was received, before the erasure (``pipeline.erasure``): a replay of the
raw topic or a late event rebuilds nothing, and a new event starts from nothing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.collector.segment import IMPORTED_KEY
from pipeline.deadletter import DeadLetter
from pipeline.erasure import Erasure, Erasures
from pipeline.errors import ProcessingError, SerdeError, WebhouseError
from pipeline.event_view import view_headers
from pipeline.immutable import immutable
from pipeline.runtime.control import END_OF_INPUT, WATERMARK, Progress, SourceState, control_kind
from pipeline.runtime.control import HEADER as CONTROL_HEADER
from pipeline.runtime.messages import Incoming
from pipeline.serde import make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics
from processors.enrichment import Enricher
from processors.identity import CustomerDevices, IdentityGuard, IdentityState, Stitched, stitch
from processors.sessions.events import SessionEvent
from processors.sessions.policy import SessionPolicy, to_ms
from processors.sessions.records import Assignment, DuplicateEvent, LateEvent, Output, Session
from processors.sessions.schedule import WakeupSchedule
from processors.sessions.state import NO_WATERMARK, DeviceState
from processors.sessions.stream import (
    add_event,
    advance,
    flush,
    is_open,
    last_event_ms,
    next_wakeup,
    release_waiting,
    seen_before,
)
from processors.worker.codec import EventCodec
from processors.worker.devices import Device, DeviceCache
from processors.worker.metrics import WorkerMetrics
from processors.worker.waiting import WaitingLedger, Writes, merge_waiting

log = logging.getLogger(__name__)
STAGE = "worker"
# The largest raw event the worker takes. Its enriched record is the event and its enrichment, with
# the event's view for the triggers in the headers (about its size again): within Kafka's largest
# record (1,000,000 bytes) with room to spare. Eight times the collector's own limit (32 KB).
RAW_EVENT_MAX_BYTES = 256 * 1024
_VIEWED = {"Product Viewed", "Product Clicked"}
_ADDED = {"Product Added"}
_BOUGHT = {"Order Completed"}
_PROFILE_CALLS = {"identify", "alias", "group"}


@immutable
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class BatchResult:
    outputs: list[Outgoing] = field(default_factory=list)
    devices: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # key -> (partition, value)
    clocks: dict[int, bytes] = field(default_factory=dict)  # partition -> value
    # Device records of forgotten customers: key -> partition, to tombstone in the devices changelog
    # (and remove from the table) after the outputs.
    erased: dict[bytes, int] = field(default_factory=dict)
    waiting: Writes = field(default_factory=dict)  # the ``waiting`` store's writes (waiting events)


def session_event(
    record: Mapping[str, Any], enrichment: Mapping[str, Any], device_id: str, payload: bytes | None = None
) -> SessionEvent:
    """What the sessionizer needs to know about one enriched event."""
    name = record.get("event")
    commerce = record.get("commerce") or {}
    products = tuple(
        str(p.get("product_id") or p.get("sku"))
        for p in commerce.get("products") or ()
        if p.get("product_id") or p.get("sku")
    )
    revenue = None
    if name in _BOUGHT:
        revenue = commerce.get("revenue")
        if revenue is None:
            revenue = commerce.get("total")
    return SessionEvent(
        event_id=record["message_id"],
        device_id=device_id,
        event_time=enrichment["event_time"],
        customer_id=enrichment["customer_id"],
        call_type=record["type"],
        event_name=name,
        is_page_view=record["type"] in ("page", "screen"),
        page=enrichment["url_path"] or record.get("name"),
        referrer_class=enrichment["referrer_class"],
        referrer_host=enrichment["referrer_host"],
        utm_source=enrichment["utm_source"],
        utm_medium=enrichment["utm_medium"],
        utm_campaign=enrichment["utm_campaign"],
        utm_term=enrichment["utm_term"],
        utm_content=enrichment["utm_content"],
        channel=record.get("channel"),
        device_class=enrichment["device_class"],
        browser_family=enrichment["browser_family"],
        os_family=enrichment["os_family"],
        products_viewed=products if name in _VIEWED else (),
        products_added=products if name in _ADDED else (),
        products_bought=products if name in _BOUGHT else (),
        revenue=float(revenue) if revenue is not None else None,
        order_id=commerce.get("order_id") if name in _BOUGHT else None,
        imported=(record.get("properties") or {}).get(IMPORTED_KEY) in ("true", True),
        payload=payload,
    )


class WorkerCore:
    """Enrich, stitch and sessionize batches of raw messages; see the module docstring."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.codec = EventCodec(settings.kafka.schema_registry_url)
        self.link_serde = make_serde("identity_link", settings.kafka.schema_registry_url)
        self.session_serde = make_serde("session", settings.kafka.schema_registry_url)
        self.dead_serde = make_serde("dead_letter", settings.kafka.schema_registry_url)
        self.enricher = Enricher.from_settings(settings.worker)
        self.policy = SessionPolicy.from_settings(settings.worker.session)
        self.metrics = metrics or WorkerMetrics()
        self.identity_events = tuple(settings.worker.identity_events)
        self.guard = IdentityGuard.from_settings(settings.worker)
        self.customers: dict[int, CustomerDevices] = {}  # per partition: customer -> linked devices
        self.devices = DeviceCache(settings.worker.device_cache)  # in front of the ``devices`` store
        self.max_event_ms: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}  # per partition: first raw offset the state lacks
        self.wakeups: dict[int, WakeupSchedule] = {}
        self.reported: dict[int, Progress] = {}  # per partition: the last progress sent downstream
        self.erasures = Erasures()  # every erasure read so far (apply_erasure)
        self.waiting = WaitingLedger()  # which waiting events the ``waiting`` store holds
        self._outcomes: Counter[str] = Counter()  # per batch, then added to the metrics at once

    # -- state ---------------------------------------------------------------------------

    def load(self, devices: Mapping[bytes, bytes], clocks: Iterable[tuple[bytes, bytes]],
             partitions: set[int], waiting: Iterable[tuple[bytes, bytes]] = ()) -> None:  # fmt: skip
        """Own exactly ``partitions``: forget revoked ones, read newly assigned ones from the stores
        (``devices``, read from now on as events need them; ``waiting``: the waiting events, put
        back into their devices' buffers).

        Partitions kept across a rebalance keep their live state (the stores may lag it while
        writes are in flight); only partitions new to this worker are read from the stores.
        """
        owned = set(self.wakeups)
        added = partitions - owned
        for partition in owned - partitions:
            self.wakeups.pop(partition, None)
            self.max_event_ms.pop(partition, None)
            self.next_offset.pop(partition, None)
            self.customers.pop(partition, None)
            # What was reported must not outlive the outputs that said it: a rewind (an aborted
            # batch redone) comes through here too, and a report remembered is not sent again.
            self.reported.pop(partition, None)
        self.devices.store = devices
        self.devices.keep_only(partitions)
        self.waiting.keep_only(self.devices.live)
        for partition in added:
            self.wakeups[partition] = WakeupSchedule()
        if added:
            self._load_clocks(clocks, added)
            self._load_devices(waiting, added)
        self._update_open_gauge()

    def _load_clocks(self, clocks: Iterable[tuple[bytes, bytes]], added: set[int]) -> None:
        for key, value in clocks:
            partition = int(key)
            if partition in added and value:
                clock = json.loads(value)
                if clock.get("max_ms") is not None:
                    self.max_event_ms[partition] = int(clock["max_ms"])
                self.next_offset[partition] = int(clock.get("next_offset", 0))

    def _load_devices(self, waiting: Iterable[tuple[bytes, bytes]], added: set[int]) -> None:
        """The new partitions' devices by their headers (``DeviceSummary``): every link into the
        customer index; those with an open visit or waiting events decoded and scheduled."""
        buffers = self.waiting.load(waiting, _Except(set(self.waiting.saved)))  # kept devices' are live
        scheduled: list[str] = []
        for device_id, summary in self.devices.summaries():
            if summary.partition not in added:
                continue
            index = self._customers(summary.partition)
            for customer_id, anonymous_id, seen_ms in summary.links:
                index.add_seen(customer_id, anonymous_id, datetime.fromtimestamp(seen_ms / 1000, tz=UTC))
            if summary.open_visit or device_id in buffers:
                scheduled.append(device_id)
        for device_id in scheduled:
            device = self.devices.get(device_id)
            if device is None:  # written with its waiting events, always: a store out of step
                raise ProcessingError(STAGE, f"waiting events of {device_id!r} without its device record")
            events = buffers.get(device_id)
            if events:
                if device.session is None:
                    device.session = DeviceState(device_id)
                device.session.buffer = merge_waiting(device.session.buffer, events)
            if device.session is not None:
                self.wakeups[device.partition].set(device_id, next_wakeup(device.session, self.policy))

    def _trim(self) -> None:
        """Between calls: decoded devices beyond ``worker.device_cache`` go, unless the clock needs them."""
        self.devices.trim(lambda device_id, device: device_id in self._wakeups(device.partition))

    def apply_erasure(self, erasure: Erasure) -> BatchResult:
        """A customer was forgotten: drop its devices (those the record names and those linked to
        it here) with their open visits and waiting events, emitting nothing of them; their
        device records are to be tombstoned (``BatchResult.erased``). Older events of these ids
        are refused from now on (``process``); newer ones start from nothing."""
        self._trim()
        ids = set(erasure.ids())
        for index in self.customers.values():
            ids.update(index.devices(erasure.customer_id))
        self.erasures.apply(Erasure(erasure.customer_id, tuple(sorted(ids)), erasure.erased_at))
        for index in self.customers.values():
            index.drop(ids)
        result = BatchResult()
        for device_id in sorted(ids):
            device = self.devices.pop(device_id)
            if device is None:
                continue
            self._wakeups(device.partition).set(device_id, None)
            result.erased[device_id.encode()] = device.partition
            self.waiting.drop(device_id, device.partition, result.waiting)
        self._update_open_gauge()
        return result

    def expire(self, ttl_ms: int, visitless_ttl_ms: int | None = None) -> BatchResult:
        """Drop devices idle for ``ttl_ms`` of their partition's event time, holding no open visit
        and no waiting event (``worker.device_ttl_s``); their records are tombstoned
        (``BatchResult.erased``). Such a device, seen again, starts afresh: a new visit (it would
        be one anyway), no memory of its old event ids, and no stitching until it signs in again
        (its links stay on the identity topic and in the identity_map table). Keys only ever seen
        in events joining no visit (crawlers) go after ``visitless_ttl_ms`` if that is shorter."""
        self._trim()
        result = BatchResult()
        short = ttl_ms if visitless_ttl_ms is None else min(ttl_ms, visitless_ttl_ms)
        expired: list[tuple[str, int]] = []
        for device_id, summary in self.devices.summaries():
            top = self.max_event_ms.get(summary.partition)
            if (
                top is None
                or summary.last_ms is None
                or summary.last_ms >= top - (short if summary.visitless else ttl_ms)
                or device_id in self._wakeups(summary.partition)  # holds a visit or waiting events
            ):
                continue
            expired.append((device_id, summary.partition))
        for device_id, partition in expired:
            self.devices.discard(device_id)
            self._wakeups(partition).set(device_id, None)
            self._customers(partition).forget_device(device_id)
            result.erased[device_id.encode()] = partition
            self.waiting.drop(device_id, partition, result.waiting)
        if result.erased:
            self.metrics.devices_expired.inc(len(result.erased))
            self._update_open_gauge()
        return result

    def is_erased(self, record: Mapping[str, Any], event_time: datetime) -> bool:
        """An event of a forgotten id from before its erasure (by event or receive time)."""
        if not len(self.erasures):
            return False
        ids = (record.get("anonymous_id"), record.get("user_id"), record.get("previous_id"))
        return self.erasures.covers(ids, (to_ms(event_time), to_ms(record["received_at"])))

    def watermark(self, partition: int) -> int:
        top = self.max_event_ms.get(partition)
        return NO_WATERMARK if top is None else top - self.policy.allowed_lateness_ms

    # -- per batch -----------------------------------------------------------------------

    def process(self, batch: Iterable[Incoming], now: datetime) -> BatchResult:
        self._trim()
        result = BatchResult()
        dirty: set[str] = set()
        touched: set[int] = set()
        seen: set[int] = set()
        ended: set[int] = set()  # partitions whose last record in this batch was an end of input
        received: list[datetime] = []
        for message in batch:
            partition = message.partition
            if message.offset < self.next_offset.get(partition, 0):
                # Redelivered after a restart, and already in the stored state (whose outputs
                # were sent before it was stored): applying it again would only be wrong.
                self._outcomes["replayed"] += 1
                continue
            self.next_offset[partition] = message.offset + 1
            seen.add(partition)
            kind = control_kind(message.headers)
            if kind is not None:
                if kind == END_OF_INPUT:
                    self._end_of_input(partition, result, dirty)
                    ended.add(partition)
                continue
            ended.discard(partition)  # input after an end of input: a new epoch
            record = self._decoded(message, result, now)
            if record is None:
                continue
            received.append(record["received_at"])
            try:
                self._one(message, record, result, dirty, touched, now)
            except Exception as exc:  # one bad event must never stop the stream
                log.exception("worker failed on %s/%s@%s", message.topic, message.partition, message.offset)
                reason = exc.reason if hasattr(exc, "reason") else type(exc).__name__
                detail = str(exc) if isinstance(exc, WebhouseError) else repr(exc)
                self._dead(result, message, str(reason), detail, now, record.get("message_id"))
        for partition in touched:
            self._advance_partition(partition, result, dirty)
            self.metrics.watermark.labels(str(partition)).set(self.watermark(partition) / 1000)
        for partition in seen:
            result.clocks[partition] = self._clock(partition)
            if partition in ended:
                continue
            if partition in touched or partition not in self.reported or not self._ended(partition):
                self._report(result, partition, Progress(SourceState.ACTIVE, self._mark(partition)))
        self._collect(result, dirty)
        self._update_open_gauge()
        if received:  # a sample per batch (oldest and newest) keeps the histogram off the hot path
            for moment in (min(received), max(received)):
                self.metrics.latency.observe(max(0.0, (now - moment).total_seconds()))
        return result

    def sweep(self, partitions: Iterable[int]) -> BatchResult:
        """Close everything open on ``partitions`` as an end of input does: release waiting events,
        close visits (``idle_sweep``). Quiet partitions are not swept; their clocks move on
        (``advance_quiet``)."""
        self._trim()
        result = BatchResult()
        dirty: set[str] = set()
        for partition in partitions:
            self._flush_partition(partition, result, dirty)
        self._collect(result, dirty)
        self._update_open_gauge()
        return result

    def advance_quiet(self, elapsed_ms: Mapping[int, int]) -> BatchResult:
        """Quiet, caught-up partitions: release their waiting events now, and move their event
        clocks on by the wall time they stayed quiet.

        Nothing else is on its way, so waiting out the allowed lateness would only hold the rows
        back: the events go out at once, into their visits, which stay open. The clock would
        otherwise stand still and a visit stay open until the partition's next event, maybe hours
        away; moving it with the wall clock closes visits by their own rules (inactivity, longest
        duration) once that much time has really passed. A visit is never closed early: a pause of
        seconds moves the clock seconds, far from a gap of minutes, so a pause (a killed collector,
        a lull) never cuts a visit the undisturbed stream keeps whole. Only an explicit end of
        input closes visits at once.
        """
        self._trim()
        result = BatchResult()
        dirty: set[str] = set()
        for partition, elapsed in sorted(elapsed_ms.items()):
            top = self.max_event_ms.get(partition)
            if top is None:
                continue
            self._release_partition(partition, result, dirty)
            if elapsed <= 0:
                continue
            self.max_event_ms[partition] = top + elapsed
            self._advance_partition(partition, result, dirty)
            result.clocks[partition] = self._clock(partition)
            current = self.reported.get(partition)
            if current is not None and current.state is SourceState.ACTIVE:
                self._report(result, partition, Progress(SourceState.ACTIVE, self._mark(partition)))
        self._collect(result, dirty)
        self._update_open_gauge()
        return result

    def idle(self, partitions: Iterable[int]) -> BatchResult:
        """Tell downstream these caught-up, quiet partitions are idle (after what they released)."""
        result = BatchResult()
        for partition in partitions:
            current = self.reported.get(partition)
            pending = self.wakeups.get(partition)
            if (current is None or current.state is SourceState.ACTIVE) and not (
                pending is not None and len(pending)
            ):
                self._report(result, partition, Progress(SourceState.IDLE, self._mark(partition)))
        return result

    def pending_partitions(self) -> set[int]:
        return {p for p, w in self.wakeups.items() if len(w)}

    def unreported_partitions(self, partitions: Iterable[int]) -> set[int]:
        """Of ``partitions``, those downstream has not heard to be idle or ended."""
        quiet = (SourceState.IDLE, SourceState.ENDED)
        return {p for p in partitions if p not in self.reported or self.reported[p].state not in quiet}

    def _flush_partition(self, partition: int, result: BatchResult, dirty: set[str]) -> None:
        """Every device of the partition: waiting events released, the open visit closed."""
        self._each_device(partition, result, dirty, flush, waiting_only=False)

    def _release_partition(self, partition: int, result: BatchResult, dirty: set[str]) -> None:
        """Every waiting event of the partition into its visit, now; open visits stay open."""
        self._each_device(partition, result, dirty, release_waiting, waiting_only=True)

    def _each_device(self, partition: int, result: BatchResult, dirty: set[str],
                     action: Callable[[DeviceState, SessionPolicy], tuple[DeviceState, list[Output]]],
                     waiting_only: bool) -> None:  # fmt: skip
        wakeups = self.wakeups.get(partition)
        if wakeups is None:
            return
        for device_id in wakeups.devices():
            device = self.devices.get(device_id)
            if device is None or device.session is None or (waiting_only and not device.session.buffer):
                continue
            device.session, outputs = action(device.session, self.policy)
            self._emit(outputs, device_id, partition, result)
            wakeups.set(device_id, next_wakeup(device.session, self.policy))
            dirty.add(device_id)

    def _end_of_input(self, partition: int, result: BatchResult, dirty: set[str]) -> None:
        """An explicit end of input: release and close everything, and pass the end on. Visits the
        watermark has already ended close by their own rule first, whether the end came in the
        batch of the last events or in one of its own (a restart changes the batches)."""
        self._advance_partition(partition, result, dirty)
        self._flush_partition(partition, result, dirty)
        self._report(result, partition, Progress(SourceState.ENDED, self.max_event_ms.get(partition)))

    def _clock(self, partition: int) -> bytes:
        """The partition's stored clock: its event clock (``max_ms``) and the first offset not in state."""
        top, offset = self.max_event_ms.get(partition), self.next_offset.get(partition, 0)
        return json.dumps({"max_ms": top, "next_offset": offset}).encode()

    def _ended(self, partition: int) -> bool:
        return self.reported[partition].state is SourceState.ENDED

    def _mark(self, partition: int) -> int | None:
        top = self.max_event_ms.get(partition)
        return None if top is None else self.watermark(partition)

    def _report(self, result: BatchResult, partition: int, progress: Progress) -> None:
        """Event-time progress of ``partition`` to its enriched and its sessions partition, after
        what it released there: a reader of either has then read every event released before the
        watermark, and every visit that closed by then (its boundary at or before it)."""
        if self.reported.get(partition) == progress:
            return
        self.reported[partition] = progress
        headers = ((CONTROL_HEADER, WATERMARK),)
        for topic in (self.topics.enriched_events, self.topics.sessions):
            result.outputs.append(Outgoing(topic, None, progress.to_bytes(), partition, headers))

    # -- internals -----------------------------------------------------------------------

    def _decoded(self, message: Incoming, result: BatchResult, now: datetime) -> dict[str, Any] | None:
        """The raw event, or None when it is a dead letter: too large for its enriched record, or
        no event. The collector takes events up to ``collector.max_event_bytes``, but a touchpoint
        may write to the raw topic itself: a 600 KB event made an enriched record (with its view in
        the headers) larger than Kafka takes, and the worker stopped on it after every restart."""
        if len(message.value) > RAW_EVENT_MAX_BYTES:
            detail = f"{len(message.value)} bytes; the worker takes events up to {RAW_EVENT_MAX_BYTES}"
            self._dead(result, message, "event_too_large", detail, now)
            return None
        try:
            return self.codec.decode(message.value, message.topic)
        except SerdeError as exc:
            self._dead(result, message, "undecodable", str(exc), now)
            return None

    def _one(self, message: Incoming, record: dict[str, Any], result: BatchResult, dirty: set[str],
             touched: set[int], now: datetime) -> None:  # fmt: skip
        enrichment = self.enricher.enrich(record)
        partition = message.partition
        if self.is_erased(record, enrichment["event_time"]):
            self._outcomes["erased"] += 1  # nothing of it goes on: not enriched, not stitched
            return
        if enrichment["is_bot"]:
            self._outcomes["bot"] += 1
            crawler = record.get("anonymous_id") or record.get("user_id")
            self._pass_visitless(message, record, enrichment, result, dirty, crawler)
            return
        stitched = self._stitch(message, record, enrichment["event_time"], result, dirty, now)
        enrichment["customer_id"] = stitched.customer_id
        session_key = _session_key(record, stitched)
        if session_key is None:
            self._outcomes["no_device"] += 1
            self._pass_visitless(message, record, enrichment, result, dirty, stitched.user_id)
            return

        # The watermark never runs ahead of the collector's clock, whatever a device claims.
        candidate = min(to_ms(enrichment["event_time"]), to_ms(record["received_at"]))
        if candidate > self.max_event_ms.get(partition, NO_WATERMARK):
            self.max_event_ms[partition] = candidate
        touched.add(partition)
        if stitched.anonymous_id is None:  # server-side: the customer's open visit here, else its own
            session_key = (
                self._open_visit_of(session_key, enrichment["event_time"], partition, result, dirty)
                or session_key
            )
        device = self._device(session_key, partition)
        device.last_ms = max(device.last_ms or candidate, candidate)
        device.visitless = False
        event = session_event(record, enrichment, session_key)
        device.session, outputs = add_event(device.session, event, self.watermark(partition), self.policy)
        dirty.add(session_key)
        verdict = outputs[0] if outputs else None
        if isinstance(verdict, DuplicateEvent):
            self._outcomes["duplicate"] += 1
        else:
            # On its way at once, with its session key; its visit is known by key, time and id
            # when the visit closes (``events_sessioned``), so nothing waits for the watermark.
            late = isinstance(verdict, LateEvent)
            enrichment["session_key"] = session_key
            enrichment["is_late"] = late
            if late:
                self._outcomes["late"] += 1  # an accepted one is counted when sessionized
            self._enriched_now(message, record, enrichment, result, session_key.encode(),
                               linked=not stitched.device_shared)  # fmt: skip
        self._emit(outputs, session_key, partition, result)
        self._wakeups(partition).set(session_key, next_wakeup(device.session, self.policy))

    def _stitch(self, message: Incoming, record: dict[str, Any], event_time: datetime, result: BatchResult,
                dirty: set[str], now: datetime) -> Stitched:  # fmt: skip
        """Identity for one event: the device's links and sign-ins, the guards, the links to emit."""
        partition = message.partition
        anonymous_id = record.get("anonymous_id") or None
        if anonymous_id is not None and self.guard.is_blocked(anonymous_id):
            anonymous_id = None  # a junk anonymous id is nobody's device
        device = self._device(anonymous_id, partition) if anonymous_id is not None else None
        customers = self._customers(partition)
        stitched = stitch(
            device.identity if device is not None else IdentityState(),
            record,
            event_time,
            self.identity_events,
            self.settings.worker.identity_history,
            self.guard,
            customers,
        )
        self._identity_outputs(stitched, message, record, result, now)
        if device is not None and anonymous_id is not None and stitched.state_changed:
            device.identity = stitched.state
            customers.add_state(stitched.state)
            dirty.add(anonymous_id)
        return stitched

    def _device(self, key: str, partition: int) -> Device:
        device = self.devices.get(key)
        if device is None:
            device = Device(partition)
            self.devices[key] = device
        device.partition = partition
        return device

    def _customers(self, partition: int) -> CustomerDevices:
        index = self.customers.get(partition)
        if index is None:
            index = self.customers[partition] = CustomerDevices()
        return index

    def _open_visit_of(
        self, customer_id: str, when: datetime, partition: int, result: BatchResult, dirty: set[str]
    ) -> str | None:
        """The device on this partition signed in as the customer at ``when`` whose visit is open
        at the partition watermark; the most recently active one if several (then by id).

        Each candidate is first advanced to the watermark (what the end of the batch would do
        anyway), so "open" means the same whatever the batch boundaries."""
        watermark = self.watermark(partition)
        best: tuple[int, str] | None = None
        for device_id in self._customers(partition).devices(customer_id):
            device = self.devices.live.get(device_id)  # a device holding a visit is always decoded
            if device is None or device.session is None or device.partition != partition:
                continue
            if device.identity.customer_at(when) != customer_id:
                continue
            device.session, outputs = advance(device.session, watermark, self.policy)
            if outputs:
                self._emit(outputs, device_id, partition, result)
                self._wakeups(partition).set(device_id, next_wakeup(device.session, self.policy))
                dirty.add(device_id)  # stored with the visit it closed, as ``_advance_partition`` does
            if not is_open(device.session, watermark, self.policy):
                continue
            candidate = (last_event_ms(device.session) or NO_WATERMARK, device_id)
            if best is None or candidate > best:
                best = candidate
        return best[1] if best is not None else None

    def _identity_outputs(self, stitched: Stitched, message: Incoming, record: dict[str, Any],
                          result: BatchResult, now: datetime) -> None:  # fmt: skip
        """Changed links to the identity topic; refused ones counted, and dead-lettered once."""
        for link in stitched.changed:
            link_key = json.dumps([link.anonymous_id, link.customer_id]).encode()
            value = self.link_serde.encode(link.to_record(), self.topics.identity)
            result.outputs.append(Outgoing(self.topics.identity, link_key, value, message.partition))
            self.metrics.identity_links.inc()
        for rejection in stitched.rejections:
            self.metrics.identity_rejected.labels(rejection.rule, rejection.field).inc()
        if stitched.reported:
            # One dead letter per message (its id is the message's origin); the first refusal's detail.
            detail = stitched.reported[0].detail()
            self._letter(result, message, "identity_rejected", detail, now, record.get("message_id"))

    def _wakeups(self, partition: int) -> WakeupSchedule:
        wakeups = self.wakeups.get(partition)
        if wakeups is None:
            wakeups = self.wakeups[partition] = WakeupSchedule()
        return wakeups

    def _advance_partition(self, partition: int, result: BatchResult, dirty: set[str]) -> None:
        watermark = self.watermark(partition)
        wakeups = self._wakeups(partition)
        for device_id in wakeups.pop_due(watermark):
            device = self.devices.get(device_id)
            if device is None or device.session is None:
                continue
            device.session, outputs = advance(device.session, watermark, self.policy)
            self._emit(outputs, device_id, partition, result)
            wakeups.set(device_id, next_wakeup(device.session, self.policy))
            # Written with the outputs it produced: a restored worker must not close this visit
            # again (outputs, state and offsets commit together; nothing downstream dedupes).
            dirty.add(device_id)

    def _emit(self, outputs: list[Output], device_id: str, partition: int, result: BatchResult) -> None:
        key = device_id.encode()
        topics = self.topics
        for output in outputs:
            if isinstance(output, Assignment):
                self._outcomes["sessionized"] += 1
                payload = output.event.payload
                if payload is not None:
                    # Saved waiting by a worker from before events went on at arrival (its
                    # ``pending`` form): it was never emitted, so it goes now, as it would have.
                    value = self.codec.finish(payload, output.session_id)
                    result.outputs.append(Outgoing(topics.enriched_events, key, value, partition))
            elif isinstance(output, Session):
                value = self.session_serde.encode(output.to_record(), topics.sessions)
                result.outputs.append(Outgoing(topics.sessions, key, value, partition))
                self.metrics.sessions_closed.labels(output.closed_by.value).inc()

    def _pass_visitless(self, message: Incoming, record: dict[str, Any], enrichment: dict[str, Any],
                        result: BatchResult, dirty: set[str], key: str | None) -> None:  # fmt: skip
        """An event joining no visit goes on at once, but a client's retry of it (same message id)
        is dropped by ``key``'s duplicate memory (a crawler's device, the customer of a CRM call),
        as a visit's events are; an event with no usable id has no key and goes on as it is."""
        if key:
            known = self.devices.get(key)
            device = self._device(key, message.partition)
            if known is None:
                device.visitless = True
            if device.session is None:
                device.session = DeviceState(key)
            if seen_before(device.session, record["message_id"], self.policy):
                self._outcomes["duplicate"] += 1
                return
            moment = min(to_ms(enrichment["event_time"]), to_ms(record["received_at"]))
            device.last_ms = max(device.last_ms or moment, moment)
            dirty.add(key)
        self._enriched_now(message, record, enrichment, result)

    def _enriched_now(self, message: Incoming, record: dict[str, Any], enrichment: dict[str, Any],
                      result: BatchResult, key: bytes | None = None,
                      linked: bool = True) -> None:  # fmt: skip
        """The enriched event on its way, keyed by ``key`` (its session key), else by its ids.
        ``linked=False``: its device and its customer were not linked (a shared device), so its
        view for the triggers leaves the device out, which would hand the device over."""
        if key is None:
            given = record.get("anonymous_id") or record.get("user_id")
            key = given.encode() if given else message.key
        value = self.codec.enriched(message.value, record, enrichment, self.topics.enriched_events)
        viewed = record if linked else {**record, "anonymous_id": None}
        headers = view_headers(viewed, enrichment)  # what the triggers read instead of the event
        result.outputs.append(Outgoing(self.topics.enriched_events, key, value, message.partition, headers))

    def _dead(self, result: BatchResult, message: Incoming, reason: str, detail: str, now: datetime,
              message_id: str | None = None) -> None:  # fmt: skip
        self._letter(result, message, reason, detail, now, message_id)
        self._outcomes["dead_letter"] += 1

    def _letter(self, result: BatchResult, message: Incoming, reason: str, detail: str, now: datetime,
                message_id: str | None = None) -> None:  # fmt: skip
        letter = DeadLetter(
            stage=STAGE, reason=reason, detail=detail, payload=message.value, failed_at=now,
            source_topic=message.topic, source_partition=message.partition, source_offset=message.offset,
            message_id=message_id,
        )  # fmt: skip
        value = self.dead_serde.encode(letter.to_record(), self.topics.dead_letters)
        result.outputs.append(Outgoing(self.topics.dead_letters, message.key, value, None))
        self.metrics.dead_letters.labels(reason).inc()

    def _collect(self, result: BatchResult, dirty: set[str]) -> None:
        for device_id in dirty:
            device = self.devices.get(device_id)
            if device is None:
                continue
            result.devices[device_id.encode()] = (device.partition, device.to_bytes())
            buffer = device.session.buffer if device.session is not None else ()
            self.waiting.level(device_id, device.partition, buffer, result.waiting)

    def _update_open_gauge(self) -> None:
        self.metrics.open_sessions.set(sum(len(w) for w in self.wakeups.values()))
        late = self._outcomes.get("late", 0)
        if late:
            self.metrics.late.inc(late)
        for outcome, count in self._outcomes.items():
            self.metrics.events.labels(outcome).inc(count)
        self._outcomes.clear()


def _session_key(record: Mapping[str, Any], stitched: Stitched) -> str | None:
    """The anonymous id, else the user id (both as the guards left them); None: no visit."""
    if stitched.anonymous_id is not None:
        return stitched.anonymous_id
    if record["type"] in _PROFILE_CALLS or record.get("channel") == "email":
        return None  # a CRM sync's identify/alias/group, an ESP's e-mail event: no visit
    return stitched.user_id


class _Except(Container[str]):
    """Every id but these."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def __contains__(self, item: object) -> bool:
        return item not in self.ids


def utc_now() -> datetime:
    """The adapter's clock (dead-letter time, latency); logic takes it as an argument."""
    return datetime.now(UTC)
