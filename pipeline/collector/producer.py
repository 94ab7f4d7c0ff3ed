"""An asyncio face on confluent_kafka.Producer: produce, then await the broker's ack, bounded.

Why not ``confluent_kafka.aio.AIOProducer`` (2.16): it adds its own batching layer and
thread pool between our call and librdkafka (a second buffer, a second timeout) and its
close does not yet close the underlying client. Here librdkafka is the only buffer: a
``produce`` call queues the message at once (non-blocking), and the event loop itself
polls for delivery reports: every ``POLL_BUSY_S`` while messages await theirs, every
``POLL_IDLE_S`` otherwise (librdkafka's error and log callbacks). Polling from a thread of
its own made librdkafka take and drop the GIL for each report, against the loop thread that
does all the other work. A request's messages share one counter (``_Acks``): the last
report resolves the request's one future.

Bounds: ``message.timeout.ms`` equals ``collector.produce_timeout_s``, so librdkafka gives
a message up in the same time the request waits for it; the await is bounded by the same
figure on top (``ProduceError`` either way). A topic the broker does not know fails after
``MISSING_TOPIC_MS`` instead, named in the error and logged (librdkafka would otherwise
wait the whole message timeout and say only "timed out"). A request answered 503 may still have some of
its events acknowledged: the client retries with the same message ids and the processors
de-duplicate by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipeline.errors import ProduceError
from pipeline.immutable import immutable
from pipeline.settings import CollectorSettings, KafkaSettings

log = logging.getLogger(__name__)

# How long librdkafka waits for a topic to appear in the metadata before failing its messages
# (topic.metadata.propagation.max.ms): long enough for a just-created topic on one cluster.
MISSING_TOPIC_MS = 1000
MISSING_TOPIC_CODES = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
POLL_BUSY_S = 0.001  # how often the loop serves delivery reports while messages await theirs
POLL_IDLE_S = 0.1  # and otherwise (error and log callbacks)


@immutable
class OutgoingMessage:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def producer_config(kafka: KafkaSettings, collector: CollectorSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": "webhouse-collector",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": collector.compression,
        "linger.ms": collector.linger_ms,
        "message.timeout.ms": int(collector.produce_timeout_s * 1000),
        "topic.metadata.propagation.max.ms": MISSING_TOPIC_MS,
    }


def describe_failure(err: KafkaError, topic: str | None) -> str:
    """The delivery error, naming the topic when the broker does not have it."""
    if err.code() in MISSING_TOPIC_CODES:
        return f"topic {topic} does not exist ({err.str()})"
    return err.str()


class AsyncProducer:
    """Start with ``start()`` inside the running loop; ``close()`` stops the poller and flushes."""

    def __init__(self, config: dict[str, Any], timeout_s: float) -> None:
        # librdkafka's own log lines go through logging (delivered by poll) instead of stderr.
        self._config = {**config, "error_cb": self._on_error, "logger": logging.getLogger("librdkafka")}
        self._last_error: int | None = None
        self.timeout_s = timeout_s
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.in_flight = 0  # messages queued and not yet reported
        self.poller_error: BaseException | None = None
        self.fatal_error: KafkaError | None = None
        self._missing_reported: set[str] = set()

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, collector: CollectorSettings) -> AsyncProducer:
        return cls(producer_config(kafka, collector), collector.produce_timeout_s)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config)
        self._wake = asyncio.Event()
        self._poller = self._loop.create_task(self._poll_loop(self._producer, self._wake))
        self._poller.add_done_callback(self._poller_ended)

    def _poller_ended(self, task: asyncio.Task[None]) -> None:
        """A poller that died (a callback raised) leaves no one to serve the reports: say so,
        and refuse new sends with that reason (503) instead of letting each time out."""
        if task.cancelled() or task.exception() is None:
            return
        self.poller_error = task.exception()
        log.error("the producer's poller stopped", exc_info=self.poller_error)

    async def _poll_loop(self, producer: Producer, wake: asyncio.Event) -> None:
        """Serve librdkafka's callbacks on the loop: often while reports are due, else seldom."""
        while True:
            producer.poll(0)
            if self.in_flight > 0:
                await asyncio.sleep(POLL_BUSY_S)
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_IDLE_S)

    def _on_error(self, err: KafkaError) -> None:
        # Broker-down errors (_TRANSPORT, _ALL_BROKERS_DOWN) are transient and show up as
        # delivery timeouts; a fatal error (idempotence broken) leaves the producer unusable.
        if err.fatal():
            self.fatal_error = err
            log.error("fatal Kafka producer error: %s", err)
            return
        # A down broker repeats the same error every reconnect: warn once per change.
        level = logging.DEBUG if err.code() == self._last_error else logging.WARNING
        self._last_error = err.code()
        log.log(level, "Kafka producer: %s", err)

    def _report_missing(self, topic: str, reason: str) -> None:
        """One error line per missing topic (each of its messages fails the same way)."""
        if topic not in self._missing_reported:
            self._missing_reported.add(topic)
            log.error("cannot produce: %s; create it or allow kafka.create_topics", reason)

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise ProduceError("the producer is not started")
        return self._producer

    def _queue(self, message: OutgoingMessage, on_delivery: Any) -> None:
        """Hand one message to librdkafka (non-blocking); ``on_delivery`` gets its report."""
        try:
            self.producer.produce(
                message.topic,
                value=message.value,
                key=message.key,
                headers=list(message.headers) or None,
                on_delivery=on_delivery,
            )
        except BufferError as exc:
            raise ProduceError("the producer's local queue is full") from exc
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() in MISSING_TOPIC_CODES:
                reason = describe_failure(err, message.topic)
                self._report_missing(message.topic, reason)
                raise ProduceError(f"produce failed: {reason}") from exc
            raise ProduceError(f"produce failed: {exc}") from exc

    def _queue_all(self, messages: Sequence[OutgoingMessage]) -> _Acks:
        """Queue all; their reports are counted by one ``_Acks`` (one loop wake-up per call)."""
        if self.fatal_error is not None:
            raise ProduceError(f"the producer failed fatally: {self.fatal_error}")
        if self.poller_error is not None:
            raise ProduceError(f"the producer's poller stopped: {self.poller_error!r}")
        assert self._loop is not None
        acks = _Acks(self, self._loop, len(messages))
        for message in messages:
            self._queue(message, acks.delivered)
            self.in_flight += 1
        if self._wake is not None:
            self._wake.set()  # the poller may be in its idle wait
        return acks

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> None:
        """Queue all, then wait until every one is acknowledged, at most ``timeout_s``."""
        if not messages:
            return
        acks = self._queue_all(messages)
        done, _ = await asyncio.wait([acks.future], timeout=self.timeout_s)
        if not done:
            acks.future.cancel()  # a late report finds it done and is ignored
            raise ProduceError(
                f"{acks.pending} of {len(messages)} messages unacknowledged after {self.timeout_s:g} s"
            )
        acks.future.result()  # raises the ProduceError of a failed delivery

    async def ready(self, topic: str, timeout_s: float) -> str | None:
        """None when the broker answers and knows ``topic``; else why not."""
        if self.fatal_error is not None:
            return f"producer failed fatally: {self.fatal_error}"
        loop = asyncio.get_running_loop()
        try:
            metadata = await loop.run_in_executor(
                None, partial(self.producer.list_topics, topic=topic, timeout=timeout_s)
            )
        except KafkaException as exc:
            return f"broker unreachable: {exc.args[0]}"
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            return f"topic {topic} unavailable: {described.error if described else 'missing'}"
        return None

    async def close(self, timeout_s: float) -> int:
        """Flush what is queued (at most ``timeout_s``), stop polling; returns messages left."""
        if self._producer is None:
            return 0
        producer = self._producer
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        # flush serves the last reports (on an executor thread: _Acks settles thread-safely).
        left: int = await asyncio.get_running_loop().run_in_executor(None, producer.flush, timeout_s)
        if left:
            log.error("%d messages not delivered at shutdown", left)
        self._producer = None
        return left


class _Acks:
    """The delivery reports of one ``send_all``: counted where librdkafka hands them over (the
    loop's poll, or flush at close), settled on the loop once."""

    __slots__ = ("_loop", "_owner", "failures", "future", "pending", "total")

    def __init__(self, owner: AsyncProducer, loop: asyncio.AbstractEventLoop, total: int) -> None:
        self._owner, self._loop, self.total = owner, loop, total
        self.future: asyncio.Future[None] = loop.create_future()
        self.pending = total
        self.failures: list[str] = []

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's report for one message (from poll, or flush at close): the last one
        settles the future."""
        if err is not None:
            reason = describe_failure(err, msg.topic())
            if err.code() in MISSING_TOPIC_CODES:
                self._owner._report_missing(msg.topic() or "?", reason)
            self.failures.append(reason)
        self.pending -= 1
        self._owner.in_flight -= 1
        if self.pending:
            return
        failure = None
        if self.failures:
            failure = (
                f"{len(self.failures)} of {self.total} messages failed: delivery failed: {self.failures[0]}"
            )
        with contextlib.suppress(RuntimeError):  # the loop closed while a report was pending
            self._loop.call_soon_threadsafe(_settle, self.future, failure)


def _settle(future: asyncio.Future[None], failure: str | None) -> None:
    if future.done():  # the request already gave up waiting
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(ProduceError(failure))
