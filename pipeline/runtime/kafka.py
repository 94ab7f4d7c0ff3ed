"""The stream runtime on a broker: one consumer group member running one ``Stage``.

Per batch, in one place (``KafkaRunner._checkpoint``): the stage's outputs, its
state writes (to the stores' compacted changelog topics) and the consumed offsets go
out in **one Kafka transaction**. Either all of it is committed or none: a crash at
any point leaves state, produced records and committed offsets consistent, and the
batch is processed again from the same state after a restart. Downstream consumers
read with ``isolation.level=read_committed`` and never see an aborted attempt.

Why not faust's agents: its per-message stream path cost 75-109 us of CPU per event
here (a third of the worker), its confluent driver has no transactions, its
aiokafka ``exactly_once`` has open duplicate reports around rebalances, and its
recovery could skip messages (we kept a repair module for that). confluent-kafka
(librdkafka) is the client the collector and sinks already use; it hands out
batches and implements KIP-447 transactions, whose offset commit is fenced by the
consumer group's generation, so a member that lost its partitions cannot commit.

The transactional id is the stage's group plus ``worker.instance_id``: with a stable
id a restarted process aborts what its predecessor left open at once
(``init_transactions``); without one (the default: host and process id) the broker
aborts it after ``worker.transaction_timeout_s``.

Rebalances use the eager protocol: partitions kept across a rebalance keep their
live state (every batch is committed before the next ``consume``, which is where
callbacks run); newly assigned ones are restored from their changelogs, read up to
the last stable offset. Partitions *lost* (the session expired, the group moved on)
count as new when they come back: someone else may have owned them in between.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from pipeline.ends import ReadToEnd
from pipeline.errors import ProcessingError
from pipeline.health import Health
from pipeline.immutable import immutable
from pipeline.runtime.backlog import DownstreamBacklog
from pipeline.runtime.messages import Incoming
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import Record, Stage, Step
from pipeline.runtime.store import DiskStore, StateFiles, StateStore, restore

log = logging.getLogger(__name__)


# How long librdkafka waits before fetching again for a partition whose prefetch queue was full
# (``queued.max.messages.kbytes``, ``worker.prefetch_kib``). At its default, 1,000 ms, a stage that
# empties its 4 MiB sooner found nothing to read: ``consume`` waited out ``batch_within_s`` and
# returned part of a batch, 3 times per 50,000 events on the bench's no-logic hop
# (bench/runtime_floor.py), 250 ms each (issue 11).
FETCH_QUEUE_BACKOFF_MS = 10


@immutable
class RunnerConfig:
    bootstrap: str
    group_id: str
    changelogs: dict[str, str]  # store name -> changelog topic
    batch_max_events: int = 2000
    batch_within_s: float = 0.25
    session_timeout_s: float = 30.0
    transaction_timeout_s: float = 10.0
    instance_id: str = "0"  # unique per process: the transactional id derives from it
    transactional: bool = True  # False: at-least-once (side effects such as webhooks), offsets after
    state_dir: Path | None = None  # stores on disk here (pipeline.runtime.store.DiskStore); None: memory
    prefetch_kib: int | None = None  # librdkafka's queued.max.messages.kbytes; None: its default
    extra_consumer: dict[str, Any] = field(default_factory=dict)
    # The consumer groups after this stage (group -> its input topics) and how many records they may
    # leave unread before this stage stops reading (``pipeline.runtime.backlog``); 0: no bound.
    downstream: dict[str, tuple[str, ...]] = field(default_factory=dict)
    downstream_max: int = 0


class KafkaRunner:
    """Runs a stage as a member of its consumer group until ``stop`` is set (see module docstring)."""

    def __init__(
        self, stage: Stage, config: RunnerConfig, metrics: RuntimeMetrics, health: Health | None = None
    ) -> None:
        self.stage = stage
        self.health = health or Health(stage.name, float("inf"))
        self.config = config
        self.metrics = metrics
        self.files = StateFiles(config.state_dir) if config.state_dir is not None else None
        self.stores: dict[str, StateStore | DiskStore] = {
            name: self.files.store(name) if self.files is not None else StateStore()
            for name in stage.store_names
        }
        self.store_of_changelog = {topic: name for name, topic in config.changelogs.items()}
        # store -> partition -> changelog offset after its last write (delivery reports)
        self.reached: dict[str, dict[int, int]] = {}
        self.sources: dict[str, str] = {}  # store -> changelog_source of its changelog
        self.owned: frozenset[int] = frozenset()
        self.committed_to: dict[tuple[str, int], int] = {}  # input partition -> offset we last committed
        self.last_arrival: dict[int, float] = {}
        self.consumer = Consumer(self._consumer_conf())
        self.producer = Producer(self._producer_conf())
        self.broadcasts = Broadcasts(config.bootstrap, tuple(getattr(stage, "broadcasts", ())))
        admin = AdminClient({"bootstrap.servers": config.bootstrap})
        self.at_end = ReadToEnd(admin)
        self.backlog = (
            DownstreamBacklog(admin, config.downstream, config.downstream_max)
            if config.downstream and config.downstream_max > 0
            else None
        )
        self._paused: frozenset[tuple[str, int]] = frozenset()  # held back (``_hold_back``)
        self._held = False
        self.metrics.held_back.labels(stage.name).set(0)  # a series from the start, 0 while not held
        self._reapply = False  # after an assignment: apply every broadcast record to the restored state
        self._closing = False  # set as the consumer leaves the group (``_close``)

    # -- configuration ---------------------------------------------------------------------

    def _consumer_conf(self) -> dict[str, Any]:
        c = self.config
        conf: dict[str, Any] = {
            "bootstrap.servers": c.bootstrap,
            "group.id": c.group_id,
            "enable.auto.commit": not c.transactional,
            "enable.auto.offset.store": False,  # at-least-once stages store offsets after the work
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,  # what tells a partition read to its end (``_behind``)
            "partition.assignment.strategy": "range",  # co-partitioned inputs land together
            "session.timeout.ms": int(c.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(min(3.0, c.session_timeout_s / 3) * 1000),
            "fetch.wait.max.ms": int(min(c.batch_within_s, 0.5) * 1000),
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
        if c.prefetch_kib is not None:
            conf["queued.max.messages.kbytes"] = c.prefetch_kib
        conf.update(c.extra_consumer)
        return conf

    def _producer_conf(self) -> dict[str, Any]:
        c = self.config
        conf: dict[str, Any] = {
            "bootstrap.servers": c.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # the Java clients' partitioner: same key, same partition
        }
        if c.transactional:
            conf["transactional.id"] = f"{c.group_id}-{c.instance_id}"
            conf["transaction.timeout.ms"] = int(c.transaction_timeout_s * 1000)
        return conf

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        name = self.stage.name
        if self.config.transactional:
            self.producer.init_transactions(60)
        self._apply_broadcasts(self.broadcasts.read_to_end())  # before any input: every erasure
        self.consumer.subscribe(
            list(self.stage.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        interval = self.stage.tick_interval_s
        next_tick = time.monotonic() + interval
        log.info("stage %s running (group %s)", name, self.config.group_id)
        try:
            while not stop.is_set():
                held = self._hold_back()
                messages = self.consumer.consume(self.config.batch_max_events, self.config.batch_within_s)
                batch = self._incoming(messages)
                # The loop coming round and each commit are what the watchdog watches (pipeline.health).
                # Held back, unread input is not work: the stages after it are (their own watchdogs).
                self.health.beat(has_work=not self.owned or bool(batch) or (not held and self._behind()))
                self.health.set_ready(bool(self.owned), "no partitions assigned")
                self._apply_broadcasts(self.broadcasts.poll())
                if self._reapply:
                    self._reapply = False
                    self._apply_broadcasts(self.broadcasts.seen)
                if batch:
                    self._process(batch)
                self._commit_ends()
                if time.monotonic() >= next_tick:
                    self._tick()
                    next_tick = time.monotonic() + interval
        finally:
            self._close()

    def _process(self, batch: list[Incoming]) -> None:
        started = time.perf_counter()
        now = datetime.now(UTC)
        for message in batch:
            self.last_arrival[message.partition] = time.monotonic()
        offsets = self._offsets_after(batch)
        step = self.stage.process(batch, self.stores, now)
        self._checkpoint(step, offsets)
        self.metrics.batch_seconds.labels(self.stage.name).observe(time.perf_counter() - started)
        self.metrics.events.labels(self.stage.name).inc(len(batch))

    def _offsets_after(self, batch: list[Incoming]) -> list[TopicPartition]:
        """Where the group's offsets go with ``batch``: past its last record of each partition, or
        at the consumer's position there when that is further on. Read at once after the consume
        that returned the batch, the position has stepped over only what a read-committed consumer
        never gets (the marker that ends each transaction, aborted records). Committed, it lets a
        caught-up group stand at the end of its input rather than one marker short of it, and past
        an aborted tail rather than before it until a later record comes: consumer-group lag reads
        0, and so does the backlog that bounds a head stage (``pipeline.runtime.backlog``)."""
        after = _next_offsets(batch)
        position = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(after)}
        return [
            TopicPartition(tp.topic, tp.partition, max(tp.offset, position.get((tp.topic, tp.partition), -1)))
            for tp in after
        ]

    def _commit_ends(self) -> None:
        """Commit the end of each owned input partition read to an end past what was committed.
        The position steps over a transaction's marker when librdkafka meets it, which can be a
        consume after the one that returned the transaction's records; that consume returns no
        record of the partition, only its end (``_offsets_after`` covers the other case)."""
        ends = [
            TopicPartition(topic, p, end)
            for (topic, p), end in self.at_end.ends.items()
            if p in self.owned and end > self.committed_to.get((topic, p), -1)
        ]
        if ends:
            self._checkpoint(Step(), ends)

    def _hold_back(self) -> bool:
        """Read nothing while the stages after this one are more than ``downstream_max`` records
        behind (``pipeline.runtime.backlog``): the assigned partitions are paused (those assigned
        meanwhile too), and resumed once they are back under it."""
        held = self.backlog is not None and self.backlog.over()
        if held:
            assigned = frozenset((tp.topic, tp.partition) for tp in self.consumer.assignment())
            fresh = assigned - self._paused
            if fresh:
                self.consumer.pause([TopicPartition(t, p) for t, p in sorted(fresh)])
            self._paused = assigned
        elif self._paused:
            again = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) in self._paused]
            self.consumer.resume(again)
            self._paused = frozenset()
        if held != self._held:
            self._held = held
            self.metrics.held_back.labels(self.stage.name).set(1 if held else 0)
            if self.backlog is not None:
                log.info("stage %s %s: %s", self.stage.name, "holds back" if held else "reads on",
                         self.backlog.describe())  # fmt: skip
        return held

    def _apply_broadcasts(self, records: list[Incoming]) -> None:
        """Records every instance reads whole (erasures), applied before the inputs that follow."""
        if records:
            step = self.stage.on_broadcast(records, self.stores, datetime.now(UTC))  # type: ignore[attr-defined]
            if step:
                self._checkpoint(step, [])

    def _tick(self) -> None:
        step = self.stage.tick(self.stores, self, datetime.now(UTC))
        if step:
            self._checkpoint(step, [])
        self._update_lag()

    def _with_fencing(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        """``offsets``, and the offsets last committed for the other owned inputs, committed again.
        Unchanged, they carry the group's generation into every transaction, and the group
        coordinator refuses them from a member that is no longer in the group: without them a
        stage whose partitions had gone to another process (its session expired while a broker was
        down; it learns so at its next poll) still committed a tick that read no input, and wrote
        the state of partitions already restored elsewhere. Seen in the cluster chaos test on
        5 December 2026: a worker's quiet-partition tick released a device's waiting events after
        the new owner had read that partition's devices and before it read its waiting events, and
        the new owner closed the visit with 7 of its 18 events. Added here rather than by the
        callers, so that no transaction can leave them out."""
        given = {(tp.topic, tp.partition) for tp in offsets}
        again = [
            TopicPartition(topic, p, offset)
            for (topic, p), offset in sorted(self.committed_to.items())
            if p in self.owned and offset >= 0 and (topic, p) not in given
        ]
        return offsets + again

    def _behind(self) -> bool:
        """Work waits though no record came: an owned partition not read to its end, or one whose
        end moved since (fetches that stopped: ``pipeline.ends``; seen as a trigger stage alive,
        silent and 48 records behind for minutes). Read: the position once a record came (it steps
        over transaction markers), else 0; an unknown end (no fetch answered yet) is work too."""
        self.at_end.probe()
        if self.at_end.behind:
            return True
        unread = [
            TopicPartition(topic, p)
            for topic in self.stage.inputs
            for p in self.owned
            if (topic, p) not in self.at_end
        ]
        if not unread:
            return False
        for tp in self.consumer.position(unread):
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 or max(tp.offset, 0) < high:
                return True
        return False

    def _incoming(self, messages: list[Message]) -> list[Incoming]:
        batch = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.at_end.reached((str(m.topic()), int(m.partition() or 0)), int(m.offset() or 0))
                    continue
                if error.fatal():
                    raise ProcessingError(self.stage.name, f"consumer failed: {error}")
                log.warning("stage %s: consumer: %s", self.stage.name, error)
                continue
            partition = int(m.partition() or 0)
            if partition not in self.owned:  # fetched before a revoke; the new owner reads it
                continue
            _, ts = m.timestamp()
            headers: Any = m.headers() or ()
            offset = int(m.offset() or 0)
            value = m.value() or b""
            batch.append(Incoming(str(m.topic()), partition, offset, m.key(), value, ts, tuple(headers)))
        if batch and self.at_end.ends:  # none read to its end (a busy stage): nothing to clear
            for tp in {(record.topic, record.partition) for record in batch}:
                self.at_end.left(tp)
        return batch

    # -- the checkpoint: outputs, state and offsets in one transaction ---------------------

    def _checkpoint(self, step: Step, offsets: list[TopicPartition]) -> None:
        if not self.config.transactional:
            self._send(step)
            self.producer.flush()
            self._commit_stores()
            if offsets:
                self.consumer.store_offsets(offsets=offsets)
            self._note_committed(offsets)
            self.health.progressed()
            return
        offsets = self._with_fencing(offsets)
        try:
            self.producer.begin_transaction()
            self._send(step)
            with self.health.within("the transaction commit"):  # a known librdkafka hang: pipeline.health
                if offsets:
                    metadata = self.consumer.consumer_group_metadata()
                    settling(self.producer.send_offsets_to_transaction)(offsets, metadata, 60)
                settling(self.producer.commit_transaction)(60)
        except KafkaException as exc:
            self._failed_transaction(exc)
            return
        self._commit_stores()
        self._note_committed(offsets)
        self.metrics.transactions.labels(self.stage.name, "committed").inc()
        self.health.progressed()

    def _note_committed(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self.committed_to[(tp.topic, tp.partition)] = tp.offset

    def _send(self, step: Step) -> None:
        for record in step.outputs:
            self._produce(record)
        changelogs = self.config.changelogs
        for write in step.writes:
            self.stores[write.store].put(write.partition, write.key, write.value)
            changelog = Record(changelogs[write.store], write.key, write.value, write.partition)
            self._produce(changelog, on_delivery=self._delivered)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        """A changelog record's delivery report: how far the store's changelog partition reached."""
        if error is None:
            reached = self.reached.setdefault(self.store_of_changelog[str(message.topic())], {})
            partition, after = int(message.partition() or 0), int(message.offset() or 0) + 1
            if after > reached.get(partition, -1):
                reached[partition] = after

    def _commit_stores(self) -> None:
        """After Kafka committed: the stores' pending writes land with the changelog offsets reached."""
        self.producer.poll(0)  # serves the delivery reports the commit's flush left queued
        reached, self.reached = self.reached, {}
        for name, store in self.stores.items():
            if isinstance(store, DiskStore) and (store.pending or name in reached):
                store.commit(reached.get(name, {}), self._source(name))

    def _source(self, store: str, fresh: bool = False) -> str:
        """What a saved offset is an offset of: the store's changelog topic, by cluster and topic id
        (a topic deleted and made again has a new id: its offsets start over)."""
        if fresh or store not in self.sources:
            self.sources[store] = changelog_source(self.config.bootstrap, self.config.changelogs[store])
        return self.sources[store]

    def _produce(self, record: Record, on_delivery: Any = None) -> None:
        kwargs: dict[str, Any] = {"key": record.key, "value": record.value}
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        if record.partition is not None:
            kwargs["partition"] = record.partition
        if record.headers:
            kwargs["headers"] = list(record.headers)
        while True:
            try:
                self.producer.produce(record.topic, **kwargs)
                return
            except BufferError:  # the local queue is full: let librdkafka send some
                self.producer.poll(0.05)

    def _failed_transaction(self, exc: KafkaException) -> None:
        """An aborted transaction leaves the stores ahead of Kafka: rebuild them from the changelogs
        and go back to the committed offsets, so the batch is processed again from the same state."""
        error = exc.args[0] if exc.args else None
        self.metrics.transactions.labels(self.stage.name, "aborted").inc()
        if error is None or not isinstance(error, KafkaError) or not error.txn_requires_abort():
            raise ProcessingError(self.stage.name, f"transaction failed: {exc}") from exc
        log.warning(
            "stage %s: transaction aborted (%s); rewinding to the last commit", self.stage.name, error
        )
        self.producer.abort_transaction(60)
        self._renew_producer()
        self.reached = {}
        self._rewind()

    def _renew_producer(self) -> None:
        """After an abort: a new producer under the same transactional id, so that the next
        transaction runs under a new producer epoch. librdkafka kept the aborted transaction's
        epoch, and on a partition where the fate of the aborted batch was unknown to it (a broker
        had been killed) it sent the next transaction's batch with the aborted batch's sequence
        numbers again: the broker took it for a duplicate of the aborted one, reported it
        delivered, and the commit committed nothing there. Seen in the cluster chaos test on 5
        December 2026: six profile versions lost; the records, markers and sequence numbers are in
        docs/architecture.md, "A new producer after an abort". ``init_transactions`` bumps the
        epoch and fences the old producer; the broker starts the new epoch's sequences over."""
        self.producer.flush(0)
        self.producer = Producer(self._producer_conf())
        self.producer.init_transactions(60)

    def _rewind(self) -> None:
        owned = self.owned
        self.stage.assign(frozenset(), self.stores)
        for store in self.stores.values():
            store.drop(owned)
        self._restore(owned)
        self.stage.assign(owned, self.stores)
        committed = committed_offsets(self.consumer, self.consumer.assignment(), timeout=60)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else 0  # nothing committed yet: from the start
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        self._forget_ends(owned)  # read again from the committed offsets
        self._note_committed(committed)

    # -- rebalances ------------------------------------------------------------------------

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels(self.stage.name).inc()
        if not self.config.transactional:
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:  # nothing stored yet is the usual case
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    log.warning("stage %s: commit at revoke: %s", self.stage.name, exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group went on without us (our session expired): other members may have owned these
        partitions meanwhile and committed state and offsets past ours. So their live state is
        forgotten here, and restored from the changelogs if they come back; kept, it would resume
        at the new owner's offsets with our older state (events it left waiting were lost)."""
        lost = frozenset(tp.partition for tp in partitions)
        log.warning("stage %s: partitions lost: %s", self.stage.name, sorted(lost))
        self.metrics.rebalances.labels(self.stage.name).inc()
        for store in self.stores.values():
            store.drop(lost)
        self._forget_ends(lost)
        self.owned -= lost
        self.stage.assign(self.owned, self.stores)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Keep what stays, forget what went, restore what is new (eager protocol: the full set).
        Closing, an assignment is let go unrestored: a rebalance that ended while the loop was busy
        leaves it queued, ``close`` serves it as the client's connections go, and asking for the
        committed offsets then failed (``_DESTROY``) and ended the stage's thread with an error."""
        if self._closing:
            log.info("stage %s: partitions %s assigned while closing: let go", self.stage.name,
                     sorted(tp.partition for tp in partitions))  # fmt: skip
            return
        new = frozenset(tp.partition for tp in partitions)
        added = new - self.owned
        self._paused = frozenset()  # an assignment's partitions start unpaused: paused again if held
        gone = self.owned - new
        for store in self.stores.values():
            store.drop(gone | added)
        self._forget_ends(gone | added)
        started = time.perf_counter()
        self._note_committed(self._await_stable_offsets(consumer, added))
        self._restore(added)
        self.owned = new
        self.stage.assign(new, self.stores)
        self._reapply = bool(added) and bool(self.broadcasts.seen)  # restored state may predate them
        now = time.monotonic()
        for partition in added:
            self.last_arrival[partition] = now
        seconds = time.perf_counter() - started
        self.metrics.restore_seconds.labels(self.stage.name).observe(seconds)
        log.info(
            "stage %s owns partitions %s (restored %s in %.2f s: %s)", self.stage.name, sorted(new),
            sorted(added), seconds, {name: len(s) for name, s in self.stores.items()},
        )  # fmt: skip

    def _forget_ends(self, partitions: Collection[int]) -> None:
        inputs = [(topic, p) for topic in self.stage.inputs for p in partitions]
        self.at_end.forget(inputs)
        for tp in inputs:
            self.committed_to.pop(tp, None)

    def _await_stable_offsets(self, consumer: Consumer, partitions: Collection[int]) -> list[TopicPartition]:
        """Before reading a changelog's end: wait until the previous owner's last transaction is
        over. A read-committed consumer's ``committed()`` asks for stable offsets (KIP-447) and
        answers only once no transaction holding the group's offsets for these partitions is open;
        that transaction's changelog records were then acknowledged by every in-sync replica, so
        the log end read next includes them. Read first, the end could stop short of a transaction
        still waiting for a replica, and the restore missed its states (seen: a broker node killed
        as the previous owner committed; the new owner started those customers afresh)."""
        if not partitions or not self.config.transactional:
            return []
        inputs = [TopicPartition(topic, p) for topic in self.stage.inputs for p in sorted(partitions)]
        return committed_offsets(consumer, inputs, timeout=RESTORE_WAIT_S)

    def _restore(self, partitions: Collection[int]) -> None:
        if not partitions:
            return
        for name, store in self.stores.items():
            restore_store(self.config.bootstrap, self.config.changelogs[name], self._source(name, fresh=True),
                          store, partitions)  # fmt: skip

    # -- what the stage may ask (RunnerView) -----------------------------------------------

    def caught_up(self, partitions: Collection[int]) -> set[int]:
        caught = set()
        for tp in self.consumer.assignment():
            if tp.partition not in partitions:
                continue
            try:
                _, high = watermarks(self.consumer, tp)
                [position] = self.consumer.position([tp])
            except KafkaException as exc:  # the broker did not answer: the next tick asks again
                log.warning("stage %s: end offsets of %s not known: %s", self.stage.name, tp, exc)
                continue
            read = position.offset if position.offset >= 0 else self._committed(tp)
            if read >= high:
                caught.add(tp.partition)
        return caught

    def _committed(self, tp: TopicPartition) -> int:
        [committed] = committed_offsets(self.consumer, [tp], timeout=10)
        return max(committed.offset, 0)

    def quiet_for(self, partition: int) -> float:
        return time.monotonic() - self.last_arrival.setdefault(partition, time.monotonic())

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                [position] = self.consumer.position([tp])
            except KafkaException:
                continue
            if high >= 0 and position.offset >= 0:
                lag = max(0, high - position.offset)
                self.metrics.lag.labels(self.stage.name, tp.topic, str(tp.partition)).set(lag)

    def _close(self) -> None:
        self._closing = True
        try:
            self.consumer.close()  # leaves the group: the partitions move at once
        finally:
            self.at_end.close()
            if self.backlog is not None:
                self.backlog.close()
            self.broadcasts.close()
            self.producer.flush(10)
            if self.files is not None:
                self.files.close()


# Errors the client does not flag retriable (a watermark query's error carries only its code) that
# pass: a request cut off because its broker went away (a node of a cluster died), a leader not yet
# moved or elected, a group coordinator still loading or moving (a committed-offsets query on a
# broker just started). Not timeouts: a transaction's "message(s) timed out" must be aborted at once
# (asking again outlasts the transaction timeout, and the coordinator then fences the producer).
BROKER_GONE = frozenset({
    KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._UNKNOWN_PARTITION,
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
})  # fmt: skip


def _retriable(exc: BaseException) -> bool:
    """A broker still settling (a topic just created, a leader moving) or gone: asking again will do.
    A fresh client's "Unknown partition" is one too, though not flagged retriable: right after a
    paused broker resumes, its partitions have no leader for a moment (a rewind's changelog read
    then failed the stage, exit 1, instead of waiting)."""
    if not isinstance(exc, KafkaException) or not isinstance(exc.args[0], KafkaError):
        return False
    error = exc.args[0]
    if error.fatal() or error.txn_requires_abort():
        return False
    return bool(error.retriable() or error.code() in BROKER_GONE)


# Metadata questions right after a topic was created or a broker restarted answer "not leader" for
# a few seconds; ask again rather than fail the stage.
settling = retry(retry=retry_if_exception(_retriable), stop=stop_after_delay(60),
                 wait=wait_exponential(0.1, max=2.0), reraise=True)  # fmt: skip


@settling
def watermarks(consumer: Consumer, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=cached)
    return int(low), int(high)


@settling
def committed_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout: float
) -> list[TopicPartition]:
    """The group's committed offsets of ``partitions``. Asked in a rebalance callback too, where an
    error leaves ``consume`` and ends the stage's thread: a group coordinator moving (NOT_COORDINATOR,
    "Failed to get committed offsets", seen in CI) is asked again."""
    return list(consumer.committed(partitions, timeout=timeout))


class Broadcasts:
    """Topics a stage reads whole in every instance, outside its consumer group (erasures)."""

    def __init__(self, bootstrap: str, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self.seen: list[Incoming] = []
        self.consumer: Consumer | None = None
        if topics:
            conf = {
                "bootstrap.servers": bootstrap,
                "group.id": f"broadcast-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
            self.consumer = Consumer(conf)

    def read_to_end(self) -> list[Incoming]:
        if self.consumer is None:
            return []
        assign = []
        for topic in self.topics:
            metadata = settling(self.consumer.list_topics)(topic, timeout=10).topics[topic]
            assign += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        self.consumer.assign(assign)
        pending = {(tp.topic, tp.partition) for tp in assign}
        records: list[Incoming] = []
        while pending:
            for m in self.consumer.consume(1000, 1.0):
                error = m.error()
                where = (str(m.topic()), int(m.partition() or 0))
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(where)
                elif error is not None:
                    raise ProcessingError("broadcast", f"{where}: {error}")
                elif m.value():
                    records.append(
                        Incoming(where[0], where[1], int(m.offset() or 0), m.key(), m.value() or b"")
                    )
        self.seen.extend(records)
        return records

    def poll(self) -> list[Incoming]:
        if self.consumer is None:
            return []
        records = [
            Incoming(str(m.topic()), int(m.partition() or 0), int(m.offset() or 0), m.key(), m.value() or b"")
            for m in self.consumer.consume(100, 0)
            if m.error() is None and m.value()
        ]
        self.seen.extend(records)
        return records

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


def _next_offsets(batch: list[Incoming]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for message in batch:
        last[(message.topic, message.partition)] = message.offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def restore_store(
    bootstrap: str, topic: str, source: str, store: StateStore | DiskStore, partitions: Collection[int]
) -> None:
    """A store's changelog partitions on the broker, read as ``pipeline.runtime.store.restore`` says."""
    ends = _log_ends(bootstrap, topic, partitions)
    restore(store, source, ends, lambda starts: read_changelog(bootstrap, topic, starts, ends))


RESTORE_WAIT_S = 120.0  # longest wait for a changelog's open transaction (aborted by its timeout)


def read_changelog(
    bootstrap: str, topic: str, starts: Mapping[int, int], ends: Mapping[int, tuple[int, int]] | None = None
) -> Iterator[tuple[int, bytes, bytes | None]]:
    """Every committed record of these changelog partitions from ``starts`` (partition -> offset)
    up to the end of the log (``ends``: the partitions' (low, high), read first if not given).

    The end is the log's, not the last stable offset: a read-committed reader stops at the LSO,
    and right after the previous owner committed its last batch (a rebalance) the commit markers
    may not be written yet, so the state read back would miss that batch while the committed
    consumer offset is past it, and the events the batch left waiting in state would be lost. So
    the read goes on until the stable offset reaches the end taken at the start (an open
    transaction ends by commit, or by abort at its timeout); past ``RESTORE_WAIT_S`` it fails.
    """
    if ends is None:
        ends = _log_ends(bootstrap, topic, starts)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"restore-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        assign = [TopicPartition(topic, p, starts[p]) for p, (_, high) in ends.items() if high > starts[p]]
        if not assign:
            return
        consumer.assign(assign)
        remaining = {tp.partition for tp in assign}
        deadline = time.monotonic() + RESTORE_WAIT_S
        while remaining:
            for m in consumer.consume(5000, 1.0):
                error = m.error()
                if error is None:
                    key = m.key()
                    if key is not None:
                        yield int(m.partition() or 0), key, m.value()
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise ProcessingError("restore", f"{topic}: {error}")
            for tp in consumer.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= ends[tp.partition][1]:
                    remaining.discard(tp.partition)
            if remaining and time.monotonic() > deadline:
                late = sorted(remaining)
                raise ProcessingError("restore", f"{topic} {late}: transaction open past {RESTORE_WAIT_S} s")
    finally:
        consumer.close()


def changelog_source(bootstrap: str, topic: str) -> str:
    """``<cluster id>/<topic>/<topic id>``: where a local store's saved changelog offsets are valid."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = admin.list_topics(timeout=30).cluster_id
    [future] = admin.describe_topics(TopicCollection([topic]), request_timeout=30).values()
    return f"{cluster}/{topic}/{future.result().topic_id}"


def _log_ends(bootstrap: str, topic: str, partitions: Collection[int]) -> dict[int, tuple[int, int]]:
    """(low, high) of each partition as the log holds it: a read-uncommitted client's watermarks
    (a read-committed one answers the last stable offset instead)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex[:12]}",
                         "isolation.level": "read_uncommitted"})  # fmt: skip
    try:
        return {p: watermarks(consumer, TopicPartition(topic, p)) for p in partitions}
    finally:
        consumer.close()
