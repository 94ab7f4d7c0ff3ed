"""The faust app: one agent and one timer, thin adapters over ``WorkerCore``.

The hot path on one screen (``WorkerRuntime.on_batch``):

1. faust hands a batch of raw messages (``stream.take_events``: one call per batch,
   not per event, past faust's ~28 us per-event overhead);
2. ``WorkerCore.process`` decodes each message once, enriches, stitches,
   sessionizes; failures become dead letters inside it;
3. outputs (enriched events, sessions, identity links, dead letters) are sent
   and flushed; only then the changed device records and partition clocks go to
   the changelog-backed tables, and are flushed too;
4. the loop body returns and faust acks the batch; acked offsets are committed
   every ``broker_commit_interval``.

Crash anywhere before 4 and the batch is read again (at least once): outputs may
repeat; events already in the restored state are skipped by offset (each partition
clock stores the next offset its state lacks), so the state never takes one twice,
and raw messages the consumer skips past are read back (``pipeline.runtime.offset_gaps``).
Every output carries a deterministic id
(message_id, session_id, anonymous id + customer id, dead_letter_id), and the
consumers downstream (webhouse sinks, triggers) are to be idempotent by that id.
We chose that over faust's ``exactly_once``: its transactions are keyed by the
output partition and have open duplicate reports around rebalances.

The timer (``settings.worker.session.idle_close_interval_s``, wall clock) closes
what is open on partitions that received nothing for a whole interval, so a quiet
site still emits its last visits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TP, EventT

from pipeline.errors import SettingsError
from pipeline.runtime.messages import headers_of
from pipeline.runtime.offset_gaps import BrokerRangeReader, fill_gaps
from pipeline.settings import Settings
from pipeline.topics import Topics
from processors.worker.core import BatchResult, Incoming, WorkerCore, utc_now
from processors.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


# topic, partition (None: by key), key, value, headers
Record = tuple[str, int | None, bytes | None, bytes, tuple[tuple[str, bytes], ...]]


def app_id(settings: Settings) -> str:
    """Consumer group and changelog prefix; under the topic prefix so test runs never meet."""
    return f"{settings.kafka.topic_prefix}-{settings.worker.app_id}"


class WorkerRuntime:
    """Moves records between Kafka, the core and the tables; holds no logic of its own."""

    def __init__(self, app: faust.App, settings: Settings, metrics: WorkerMetrics) -> None:
        self.app = app
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.core = WorkerCore(settings, metrics)
        self.metrics = metrics
        partitions = self.topics.partitions
        # bytes key/value types make faust use its "raw" codec for the changelogs (a faust.Schema
        # argument is not honoured there: recovery would decode our bytes as JSON).
        self.devices = app.Table(
            "devices", partitions=partitions, key_type=bytes, value_type=bytes,
            help="Device session + identity state.",
        )  # fmt: skip
        self.clocks = app.Table(
            "clocks", partitions=partitions, key_type=bytes, value_type=bytes,
            help="Max event time per partition.",
        )  # fmt: skip
        # Raw bytes in, decoded by the core: a decoding error inside faust would crash the take
        # buffer and skip messages silently. (A faust.Schema passed here is not honoured for keys.)
        self.raw_topic = app.topic(
            self.topics.raw_events, partitions=partitions, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )  # fmt: skip
        self.lock = asyncio.Lock()
        self.loaded_for: frozenset[int] | None = None
        self.last_arrival: dict[int, float] = {}
        self.read_offsets: dict[int, int] = {}
        self.gap_reader = BrokerRangeReader(settings.kafka.bootstrap_servers, stage="worker")

    # -- faust entry points --------------------------------------------------------------

    async def agent(self, stream: faust.StreamT[bytes]) -> None:
        settings = self.settings.worker
        batches = stream.take_events(  # type: ignore[attr-defined]  # faust-streaming adds it; stubs lag
            settings.batch_max_events, within=settings.batch_within_s
        )
        async for events in batches:
            await self.on_batch(list(events))

    async def on_batch(self, events: list[EventT]) -> None:
        started = time.perf_counter()
        batch = [
            Incoming(
                e.message.topic, e.message.partition, e.message.offset, e.message.key,
                e.message.value if e.message.value is not None else b"", None, headers_of(e.message),
            )
            for e in events
        ]  # fmt: skip
        while self.loaded_for is None and not self.recovered():
            await asyncio.sleep(0.05)  # never process before the tables are restored
        async with self.lock:
            self.ensure_loaded()
            expected = {(self.topics.raw_events, p): offset for p, offset in self.core.next_offset.items()}
            batch, gaps = await fill_gaps(batch, expected, self.gap_reader)
            for outcome, count in gaps.items():
                if count:
                    self.metrics.offset_gaps.labels(outcome).inc(count)
            result = self.core.process(batch, utc_now())
            processed = time.perf_counter()
            await self.write(result)
        log.debug(
            "batch of %d: %d outputs, %d device writes; process %.3f s, write %.3f s",
            len(batch), len(result.outputs), len(result.devices), processed - started,
            time.perf_counter() - processed,
        )  # fmt: skip
        now = time.monotonic()
        for message in batch:
            self.last_arrival[message.partition] = now
            self.read_offsets[message.partition] = message.offset
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def tick(self) -> None:
        """Timer: close what is open on quiet partitions; refresh the lag gauge."""
        if not self.recovered():
            return
        interval = self.settings.worker.session.idle_close_interval_s
        now = time.monotonic()
        async with self.lock:
            self.ensure_loaded()

            # Quiet = nothing new for a whole interval AND nothing left to read: a partition
            # waiting behind another one's backlog is not quiet, only not yet served.
            # Quiet partitions with open visits are closed; those quiet for worker.idle_after_s
            # are reported idle (runtime.control), so no stage's clock waits on them.
            def quiet_for(p: int) -> float:
                return now - self.last_arrival.setdefault(p, now)

            flush = [p for p in self.core.pending_partitions() if quiet_for(p) >= interval]
            idle_after = self.settings.worker.idle_after_s
            unreported = self.core.unreported_partitions(self.loaded_for or ())
            idle = [p for p in unreported if quiet_for(p) >= idle_after]
            caught = set(await self.caught_up(sorted(set(flush) | set(idle))))
            if caught & set(flush):
                await self.write(self.core.sweep(sorted(caught & set(flush))))
            if caught & set(idle):
                await self.write(self.core.idle(sorted(caught & set(idle))))
        self.update_lag()

    # -- plumbing ------------------------------------------------------------------------

    def recovered(self) -> bool:
        tables = self.app.tables
        recovery = getattr(tables, "recovery", None)
        return bool(recovery is not None and recovery.completed.is_set() and not self.app.rebalancing)

    def assigned(self) -> frozenset[int]:
        raw = self.topics.raw_events
        return frozenset(tp.partition for tp in self.app.consumer.assignment() if tp.topic == raw)

    def ensure_loaded(self) -> None:
        """After a start or rebalance, own the assigned partitions (new ones read from the tables).

        Nothing changes while faust is rebalancing or recovering: the assignment and the tables
        are in flux then, and the live state of kept partitions must not be replaced by them.
        """
        if not self.recovered():
            return
        assigned = self.assigned()
        if assigned == self.loaded_for:
            return
        self.core.load(self.devices.data.items(), self.clocks.data.items(), set(assigned))
        now = time.monotonic()
        for partition in assigned - (self.loaded_for or frozenset()):
            self.last_arrival[partition] = now
        self.loaded_for = assigned
        log.info("worker owns partitions %s: %d devices", sorted(assigned), len(self.core.devices))

    async def write(self, result: BatchResult) -> None:
        """Outputs, then device states, then partition clocks, each confirmed before the next.

        A clock holds the next raw offset its partition's state lacks; a restarted worker skips
        what is below it. So a crash repeats outputs (never loses them), and the state is never
        applied the same event twice (the sessionizer's duplicate memory covers the one batch a
        crash between states and clocks can leave). Records go out as aiokafka record batches
        per topic-partition (faust's per-message ``send``/``send_changelog`` costs ~0.1-0.5 ms a
        record here); the in-memory tables are updated alongside, as ``Table.__setitem__`` does.
        """
        await self.send_all((o.topic, o.partition, o.key, o.value, o.headers) for o in result.outputs)
        devices_log = self.devices.changelog_topic.get_topic_name()
        clocks_log = self.clocks.changelog_topic.get_topic_name()
        records: list[Record] = []
        for key, (partition, value) in result.devices.items():
            self.devices.data[key] = value
            records.append((devices_log, partition, key, value, ()))
        await self.send_all(records)
        records = []
        for partition, value in result.clocks.items():
            clock_key = str(partition).encode()
            self.clocks.data[clock_key] = value
            records.append((clocks_log, partition, clock_key, value, ()))
        await self.send_all(records)

    async def send_all(self, records: Iterable[Record]) -> None:
        """Send and wait until the broker has every record (acks=all)."""
        producer = self.app.producer
        client = producer._ensure_producer() if hasattr(producer, "_ensure_producer") else None
        if client is None or not hasattr(client, "create_batch"):
            for topic, partition, key, value, headers in records:
                await producer.send(topic, key, value, partition, None, dict(headers) or None)
            await producer.flush()
            return
        batches: dict[tuple[str, int], Any] = {}
        pending = []
        for topic, partition, key, value, headers in records:
            where = (topic, 0 if partition is None else partition)  # unpartitioned: dead letters
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = client.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                pending.append(await client.send_batch(batch, where[0], partition=where[1]))
                batch = batches[where] = client.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=list(headers))
        for (topic, partition), batch in batches.items():
            pending.append(await client.send_batch(batch, topic, partition=partition))
        if pending:
            await asyncio.gather(*pending)

    async def caught_up(self, partitions: list[int]) -> list[int]:
        """Those raw partitions of which this worker has read everything the broker holds.

        Asks the broker (faust's ``highwaters``): the fetcher's cached high watermark stays
        unknown for a partition that never had a record, and such a partition is caught up.
        """
        if not partitions:
            return []
        tps = [TP(self.topics.raw_events, p) for p in partitions]
        try:
            highs = await self.app.consumer.highwaters(*tps)
        except Exception as exc:  # the broker did not answer this tick: the next one asks again
            log.warning("worker: end offsets of %s not known: %s", partitions, exc)
            return []
        return [
            tp.partition
            for tp in tps
            if highs.get(tp) is not None and self.core.next_offset.get(tp.partition, 0) >= highs[tp]
        ]

    def update_lag(self) -> None:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.topics.raw_events:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:  # not known yet right after an assignment
                continue
            if high is None:
                continue
            read = self.read_offsets.get(tp.partition, -1) + 1
            self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, high - read))


def create_app(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    """The worker's faust App with its agent, tables and timer; triggers may add their own agents."""
    if not settings.worker.store.startswith("memory://"):
        # Batches mix partitions; faust's rocksdb store files keys by the *current* event's
        # partition, which a batch cannot give per key. The memory store restores from changelogs.
        raise SettingsError("worker.store: only memory:// is supported by the batching worker")
    topics = Topics.from_settings(settings.kafka)
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")]
    app = faust.App(
        app_id(settings),
        broker=brokers,
        store=settings.worker.store,
        datadir=str(settings.worker.data_dir),
        topic_partitions=topics.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        web_enabled=settings.worker.web_enabled,
        web_port=settings.worker.web_port,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.worker.group_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker.group_session_timeout_s / 3),
        autodiscover=False,
    )
    runtime = WorkerRuntime(app, settings, metrics or WorkerMetrics())

    async def enrich_stitch_sessionize(stream: faust.StreamT[bytes]) -> None:
        await runtime.agent(stream)

    app.agent(runtime.raw_topic, name="enrich-stitch-sessionize")(enrich_stitch_sessionize)
    app.timer(settings.worker.session.idle_close_interval_s, name="idle-sweep")(runtime.tick)
    app.webhouse_runtime = runtime  # type: ignore[attr-defined]
    return app


def register_extensions(app: faust.App, settings: Settings) -> list[str]:
    """Let other stages add agents to the same App: ``<module>.register(app, settings)``.

    The modules are ``settings.worker.extensions`` (default ``triggers.agents``); one that is not
    installed is skipped, one that fails to register stops the start (no half-configured worker).
    """
    import importlib.util

    registered = []
    for name in settings.worker.extensions:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            log.info("worker extension %s not installed; skipped", name)
            continue
        module: Any = importlib.import_module(name)
        module.register(app, settings)
        registered.append(name)
    return registered
