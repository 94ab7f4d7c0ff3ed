"""`webhouse sink`: the consumer loop that lands topics into the webhouse tables.

The hot path on one screen:

1. on assignment, each partition is sought to the lowest ``transaction_version + 1``
   of the tables it feeds (the tables, not Kafka, say what has landed);
2. poll, decode (Avro), and for every table still behind at that offset turn the
   record into rows; undecodable input goes to the dead-letter topic;
3. when the buffered rows reach ``batch_max_rows`` or the oldest is
   ``batch_max_seconds`` old: flush dead letters, then per table append the rows and
   the last offset per partition in one Delta commit (``DeltaStore.append``);
4. only then commit the Kafka offsets (for lag dashboards; nothing reads them back);
5. between batches, compact the tables' small files and vacuum old ones when due
   (``sinks.maintenance.Upkeep``); a run that exits when idle (a backfill) compacts last.

Each turn of the loop reports to a ``pipeline.health.Health``: whether work is waiting (no
partitions assigned, rows buffered, a partition not read to its end) and whether a message
was handled or a batch landed; the sink's watchdog acts when work waits without progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from pipeline.deadletter import DeadLetter
from pipeline.ends import ReadToEnd
from pipeline.errors import PartitionTaken, SerdeError, SinkError
from pipeline.health import Health
from pipeline.kafka_admin import require_topics
from pipeline.runtime.control import is_control
from pipeline.runtime.host import collect_young_garbage_every
from pipeline.serde import Serde, make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics
from sinks.maintenance import Upkeep
from sinks.metrics import SinkMetrics
from sinks.store import DeltaStore, app_id
from sinks.tables import Table, source_topic

log = logging.getLogger(__name__)
TP = tuple[str, int]


class SinkRunner:
    """Lands the topics of ``tables``; one instance per process (a consumer-group member)."""

    def __init__(
        self,
        settings: Settings,
        tables: list[Table],
        store: DeltaStore | None = None,
        metrics: SinkMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.health = health or Health("sink", settings.health.stall_after_s)
        self.cfg = settings.webhouse
        self.topics = Topics.from_settings(settings.kafka)
        self.store = store or DeltaStore(settings.webhouse)
        self.metrics = metrics or SinkMetrics()
        self.by_topic: dict[str, list[Table]] = defaultdict(list)
        for table in tables:
            self.by_topic[source_topic(table.spec, self.topics)].append(table)
        self.serdes: dict[str, Serde] = {
            topic: make_serde(ts[0].spec.schema_name, settings.kafka.schema_registry_url)
            for topic, ts in self.by_topic.items()
        }
        self.dead_letter_serde = make_serde("dead_letter", settings.kafka.schema_registry_url)
        self.upkeep = Upkeep(self.store, [t.spec for t in tables])
        self.landed: dict[tuple[str, str, int], int] = {}  # (table, topic, partition) -> last offset
        # Buffered per (table, partition): decoded records and their transform rows (built into
        # Arrow column-wise at flush).
        self.records: dict[tuple[str, TP], list[dict[str, Any]]] = defaultdict(list)
        self.derived: dict[tuple[str, TP], list[list[dict[str, Any]]]] = defaultdict(list)
        self.offsets: dict[tuple[str, TP], int] = {}
        self.buffered = 0
        self.oldest: float | None = None
        self.dead_letters_pending = 0
        self.assigned: set[TP] = set()
        self.at_end = ReadToEnd(AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers}))
        self.landed_rows = 0
        self._poll_size = max(1, min(1000, self.cfg.batch_max_rows))  # a batch overshoots by < one poll
        kafka = settings.kafka
        conf: dict[str, Any] = {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": self.cfg.consumer_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            # The stream stages write in transactions: land only what they committed, and learn
            # "caught up" from end-of-partition events (a commit marker holds the last offset).
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
        if self.cfg.group_instance_id:
            conf["group.instance.id"] = self.cfg.group_instance_id
        self.consumer = Consumer(conf)
        self.producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})

    # -- assignment: the tables say where to resume -------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Each table's snapshot read once (on S3 a load is several requests), then asked per partition.
        snapshots = {t.name: self.store.open(t.name) for tp in partitions for t in self.by_topic[tp.topic]}
        for tp in partitions:
            lowest: int | None = None
            for table in self.by_topic[tp.topic]:
                dt = snapshots[table.name]
                app = app_id(table.name, tp.topic, tp.partition)
                version = None if dt is None else dt.transaction_version(app)
                last = -1 if version is None else version
                self.landed[(table.name, tp.topic, tp.partition)] = last
                lowest = last if lowest is None else min(lowest, last)
            tp.offset = OFFSET_BEGINNING if lowest is None or lowest < 0 else lowest + 1
            self.assigned.add((tp.topic, tp.partition))
            log.info("assigned %s[%d] from offset %s", tp.topic, tp.partition, tp.offset)
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.inc()
        self.flush()
        for tp in partitions:
            self.at_end.left((tp.topic, tp.partition))
        self._release({(tp.topic, tp.partition) for tp in partitions})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Another member owns them now: whatever we buffered for them is theirs to land."""
        self.metrics.rebalances.inc()
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.at_end.forget(lost)
        for key in [k for k in self.records if k[1] in lost]:
            del self.records[key]
            self.buffered -= sum(len(d) for d in self.derived.pop(key))
        for key in [k for k in self.offsets if k[1] in lost]:
            del self.offsets[key]
        self._release(lost)

    def _release(self, partitions: set[TP]) -> None:
        """Forget the positions of partitions we no longer hold: their new owner commits them now,
        and a stale position of ours committed later would move the group's offset back (lag that
        never clears on an idle partition)."""
        self.assigned -= partitions
        for key in [k for k in self.landed if (k[1], k[2]) in partitions]:
            del self.landed[key]

    # -- the loop ------------------------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, exit_when_idle: bool = False, assign_all: bool = False
    ) -> int:
        """Land until ``stop`` is set (or, with ``exit_when_idle``, until caught up). Returns rows landed.

        ``assign_all``: take every partition without joining the group (one sink process, starts at
        once: no rebalance to wait for); the group id still carries the committed offsets for lag.
        """
        stop = stop or threading.Event()
        collect_young_garbage_every(self.cfg.gc_threshold)
        try:
            require_topics(self.settings.kafka, self.topics.specs())
        except BaseException:
            self.consumer.close()
            raise
        self._subscribe(assign_all)
        try:
            idle = self._loop(stop, exit_when_idle)
            self.flush()
            if idle:  # e.g. a backfill: leave the tables compacted
                self.upkeep.compact_now()
        finally:
            self.consumer.close()
            self.at_end.close()
            self.producer.flush(10)
        return self.landed_rows

    def _subscribe(self, assign_all: bool) -> None:
        if assign_all:
            partitions = [
                TopicPartition(topic, p)
                for topic, found in self._partitions_of(list(self.by_topic)).items()
                for p in sorted(found)
            ]
            self._on_assign(self.consumer, partitions)
        else:
            self.consumer.subscribe(
                list(self.by_topic),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )

    def _partitions_of(self, topics: list[str], wait_s: float = 30.0) -> dict[str, list[int]]:
        """Each topic's partitions. Topics created a moment ago may be missing from the first
        metadata answers (the broker is still propagating them): asked again until ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            metadata = self.consumer.list_topics(timeout=10).topics
            found = {
                t: list(metadata[t].partitions) for t in topics if t in metadata and metadata[t].partitions
            }
            if len(found) == len(topics) or time.monotonic() >= deadline:
                missing = sorted(set(topics) - set(found))
                if missing:
                    raise SinkError(f"topics not in the broker's metadata after {wait_s:.0f}s: {missing}")
                return found
            time.sleep(0.2)

    def _loop(self, stop: threading.Event, exit_when_idle: bool) -> bool:
        """Poll, land and keep the tables up until ``stop``; True when it ended caught up (idle)."""
        while not stop.is_set():
            messages = self.consumer.consume(num_messages=self._poll_size, timeout=0.2)
            for msg in messages:
                self._handle(msg)
            if any(m.error() is None for m in messages):  # errors and end-of-partition events are not
                self.health.progressed()  # progress: a sink refused by its group gets nothing else
            if self._due():
                self.flush()
            self.upkeep.run_due()
            self._report_health()
            if exit_when_idle and not messages and self.assigned and self.update_lag():
                return True
        return False

    def _report_health(self) -> None:
        """Work waits when nothing is assigned, rows are buffered, or a partition has messages
        past what we read. Read: the consumer's position once it delivered a message there (it
        steps over transaction markers), else where the tables say we resume. The watermark is
        the cached one of the last fetch, so this costs no broker round trip; unknown (no fetch
        answered yet) counts as work, as a fetch is answered within a second. A partition read to
        its end is checked against the broker now and then (``pipeline.ends``): fetches that stopped
        leave the cached figures frozen."""
        self.at_end.probe()
        assigned = bool(self.assigned)
        self.health.set_ready(assigned, "no partitions assigned")
        if not assigned or self.offsets:
            self.health.beat(has_work=True)
            return
        resume = self._positions()
        behind = False
        for tp in self.consumer.position([TopicPartition(t, p) for t, p in self.assigned]):
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if (tp.topic, tp.partition) in self.at_end.behind:  # its end moved, no record came
                behind = True
                continue
            if (tp.topic, tp.partition) in self.at_end:  # read to its end (past any commit marker)
                continue
            read = tp.offset if tp.offset >= 0 else resume.get((tp.topic, tp.partition), 0)
            behind = behind or high < 0 or read < high
        self.health.beat(has_work=behind)

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None and err.code() == KafkaError._PARTITION_EOF:
            self.at_end.reached((str(msg.topic()), int(msg.partition() or 0)), int(msg.offset() or 0))
            return
        if err is not None:
            if err.fatal():
                raise SinkError(f"consumer failed: {err}")
            log.warning("consumer: %s", err)
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        self.at_end.left((topic, partition))
        behind = [t for t in self.by_topic[topic] if offset > self.landed[(t.name, topic, partition)]]
        if not behind:
            return
        value = msg.value() or b""
        tp = (topic, partition)
        record = None
        if not is_control(msg.headers()):  # event-time progress for the stream stages, not a row
            try:
                record = self.serdes[topic].decode(value, topic)
            except SerdeError as exc:
                self._dead_letter(msg, "undecodable", str(exc))
        for table in behind:
            key = (table.name, tp)
            if record is not None:
                try:
                    derived = table.derive(record)
                except Exception as exc:  # a transform bug must not stop the sink or drop silently
                    self._dead_letter(msg, f"transform_failed:{table.name}", repr(exc))
                    derived = []
                if derived:
                    self.records[key].append(record)
                    self.derived[key].append(derived)
                    self.buffered += len(derived)
            self.offsets[key] = offset
        if self.oldest is None:
            self.oldest = time.monotonic()

    def _dead_letter(self, msg: Message, reason: str, detail: str) -> None:
        topic = msg.topic()
        self.metrics.dead_letters.labels(reason).inc()
        if topic == self.topics.dead_letters:
            log.error(
                "undecodable dead letter at %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), detail
            )
            return
        letter = DeadLetter(
            stage="sink",
            reason=reason,
            detail=detail,
            payload=msg.value() or b"",
            failed_at=datetime.now(UTC),
            source_topic=topic,
            source_partition=msg.partition(),
            source_offset=msg.offset(),
        )
        data = self.dead_letter_serde.encode(letter.to_record(), self.topics.dead_letters)
        self.producer.produce(self.topics.dead_letters, data, key=letter.dead_letter_id.encode())
        self.dead_letters_pending += 1

    def _due(self) -> bool:
        if self.oldest is None:
            return False
        return (
            self.buffered >= self.cfg.batch_max_rows
            or time.monotonic() - self.oldest >= self.cfg.batch_max_seconds
        )

    # -- landing -------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Land every buffered row with its offsets, table by table, then commit Kafka offsets."""
        if not self.offsets:
            return
        if self.dead_letters_pending:
            if self.producer.flush(30) > 0:
                raise SinkError("dead letters not acknowledged; not landing past them")
            self.dead_letters_pending = 0
        tables = {t.name: t for ts in self.by_topic.values() for t in ts}
        by_table: dict[str, list[tuple[str, TP]]] = defaultdict(list)
        for key in self.offsets:
            by_table[key[0]].append(key)
        for name, keys in by_table.items():
            self._land(tables[name], keys)
        self.records.clear()
        self.derived.clear()
        self.offsets.clear()
        self.buffered = 0
        self.oldest = None
        self._commit_kafka()
        self.health.progressed()
        self.update_lag()

    def _land(self, table: Table, keys: list[tuple[str, TP]]) -> None:
        """One table's buffered rows with their offsets, fenced (``sinks.store.fence``): the
        partitions another sink has landed past us are dropped here and read again from the
        table's position, the rest land."""
        name = table.name
        while keys:
            records = [r for key in keys for r in self.records.get(key, ())]
            derived = [d for key in keys for d in self.derived.get(key, ())]
            txns = {app_id(name, tp[0], tp[1]): self.offsets[(name, tp)] for _, tp in keys}
            landed = {app_id(name, tp[0], tp[1]): self.landed.get((name, tp[0], tp[1]), -1) for _, tp in keys}
            try:
                result = self.store.append(table, table.batch(records, derived), txns, landed)
            except PartitionTaken as taken:
                keys = self._yield(name, keys, taken)
                continue
            for _, tp in keys:
                self.landed[(name, tp[0], tp[1])] = self.offsets[(name, tp)]
            self.landed_rows += result.rows
            self.metrics.rows.labels(name).inc(result.rows)
            self.metrics.duplicates.labels(name).inc(result.duplicates)
            self.metrics.files.labels(name).inc(result.files)
            self.metrics.commit_seconds.labels(name).observe(result.seconds)
            log.debug(
                "%s: landed %d rows (%d duplicates) in %.3fs",
                name,
                result.rows,
                result.duplicates,
                result.seconds,
            )
            return

    def _yield(self, name: str, keys: list[tuple[str, TP]], taken: PartitionTaken) -> list[tuple[str, TP]]:
        """Drop this table's rows of the partitions another sink landed past us, take the table's
        position as ours, and read on from there if we still hold them; the keys left to land."""
        log.warning("%s", taken)
        self.metrics.fenced.labels(name).inc()
        left = []
        for key in keys:
            _, (topic, partition) = key
            recorded = taken.recorded.get(app_id(name, topic, partition))
            if recorded is None:
                left.append(key)
                continue
            self.buffered -= sum(len(d) for d in self.derived.pop(key, ()))
            self.records.pop(key, None)
            self.offsets.pop(key, None)
            self.landed[(name, topic, partition)] = recorded
            self._seek_to_table(topic, partition)
        return left

    def _seek_to_table(self, topic: str, partition: int) -> None:
        """Read a partition again from where its least-advanced table ends (if we still hold it;
        if not, the rebalance that follows hands it over)."""
        position = self._positions().get((topic, partition))
        if position is None or (topic, partition) not in self.assigned:
            return
        try:
            self.consumer.seek(TopicPartition(topic, partition, position))
        except KafkaException as exc:
            log.warning("cannot seek %s[%d] to %d: %s", topic, partition, position, exc)

    def _positions(self) -> dict[TP, int]:
        """Next offset to read per partition: one past the least-advanced table."""
        out: dict[TP, int] = {}
        for (_, topic, partition), last in self.landed.items():
            tp = (topic, partition)
            out[tp] = min(out.get(tp, last + 1), last + 1)
        return out

    def _commit_kafka(self) -> None:
        positions = self._positions().items()
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions if o > 0 and (t, p) in self.assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # only lag visibility depends on it
            log.warning("kafka offset commit failed: %s", exc)

    def update_lag(self) -> bool:
        """True when every assigned partition is read to its end and landed (also sets lag)."""
        done = not self.offsets
        for topic, partition in self.assigned:
            if (topic, partition) in self.at_end:
                for table in self.by_topic[topic]:
                    self.metrics.lag.labels(table.name, str(partition)).set(0)
                continue
            # Cached: the high watermark of the last fetch response. A broker query waits behind
            # the consumer's own long-poll fetch (~0.5 s per partition).
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high < 0:  # no fetch response yet: unknown, so not caught up
                done = False
                continue
            for table in self.by_topic[topic]:
                behind = max(0, high - 1 - self.landed.get((table.name, topic, partition), -1))
                self.metrics.lag.labels(table.name, str(partition)).set(behind)
                done = done and behind == 0
        return done
