"""Running the collector: in the current event loop (``CollectorServer``), or in a thread of
its own for synchronous callers (``ThreadedCollector``: tests with blocking HTTP clients,
``webhouse demo``). Port 0 binds a free port; ``url`` reports where it listens.

Shutdown order matters for "an acknowledged event is never lost": stop accepting, let open
requests finish (they wait for their acks), then flush and close the producer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial
from types import TracebackType

from aiohttp import web
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry

from pipeline.collector.app import CollectorContext, build_app
from pipeline.collector.ingest import Ingestor
from pipeline.collector.limits import EventLimits
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.producer import AsyncProducer
from pipeline.collector.pseudonymise import Pseudonymiser
from pipeline.errors import LocalKafkaError, WebhouseError
from pipeline.kafka_admin import prepare_topics
from pipeline.safe_defaults import refuse_default_secrets
from pipeline.serde import make_serde
from pipeline.settings import Settings
from pipeline.topics import Topics

log = logging.getLogger(__name__)


def pseudonymiser(settings: Settings) -> Pseudonymiser | None:
    """The collector's pseudonymiser; it keeps IP networks only when the worker looks up geo."""
    pii = settings.collector.pii
    if not pii.enabled:
        return None
    if settings.worker.geoip_database is None:
        pii = pii.model_copy(update={"ip_network_for_geo": False})
    return Pseudonymiser.from_settings(pii, settings.webhouse.pii_hmac_secret)


class CollectorServer:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings.kafka)
        self.metrics = CollectorMetrics.create(registry)
        self.producer = AsyncProducer.from_settings(settings.kafka, settings.collector)
        registry_url = settings.kafka.schema_registry_url
        self.ingestor = Ingestor(
            self.topics,
            make_serde("customer_event", registry_url),
            make_serde("dead_letter", registry_url),
            self.producer,
            self.metrics,
            settings.collector.max_event_bytes,
            EventLimits.from_settings(settings.collector),
            pseudonymiser(settings),
        )
        self.context = CollectorContext(settings, self.topics, self.producer, self.ingestor, self.metrics)
        self.app = build_app(self.context)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, reuse_port: bool = False) -> str:
        """Bind and serve; returns the base URL (``http://host:port``). ``reuse_port``: share the
        port with other processes (SO_REUSEPORT), as ``--processes N`` does."""
        collector = self.settings.collector
        refuse_default_secrets(self.settings, "collector", collector.host)
        await self._prepare_topics()
        self.producer.start()
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=collector.shutdown_timeout_s,
            auto_decompress=False,  # request.decode_body inflates gzip itself, bounded
        )
        try:
            await self._runner.setup()
            site = web.TCPSite(self._runner, collector.host, collector.port, reuse_port=reuse_port or None)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        log.info("collector listening on %s, producing to %s", self.url, self.topics.raw_events)
        return self.url

    async def _prepare_topics(self) -> None:
        """Create the project topics when allowed, else log the missing ones by name. A broker
        down at start does not stop the collector: /health/ready says when it is back."""
        kafka, timeout_s = self.settings.kafka, self.settings.collector.health_timeout_s
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, partial(prepare_topics, kafka, self.topics.specs(), timeout_s)
            )
        except (KafkaException, LocalKafkaError) as exc:
            log.warning("could not check the Kafka topics at start (%s); see /health/ready", exc)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # waits for open requests, up to shutdown_timeout_s
            self._runner = None
        await self.producer.close(self.settings.collector.shutdown_timeout_s)

    async def __aenter__(self) -> CollectorServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ThreadedCollector:
    """A CollectorServer on an event loop in a background thread; ``with`` starts and stops it."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.server = CollectorServer(settings, registry)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="collector", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def metrics(self) -> CollectorMetrics:
        return self.server.metrics

    def start(self) -> str:
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        except BaseException:
            self._shutdown_loop()
            raise

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        timeout = 2 * self.server.settings.collector.shutdown_timeout_s + 5
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=timeout)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise WebhouseError("the collector thread did not stop")
        self._loop.close()

    def __enter__(self) -> ThreadedCollector:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
