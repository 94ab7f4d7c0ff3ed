"""Trigger agents in a faust App of their own (`webhouse triggers run`).

Normally the triggers ride in the worker's App (``worker.extensions``). Running them
apart lets them scale, restart and be tested on their own: this App reads the enriched
events and sessions topics the worker writes, with its own consumer group and tables.
"""

from __future__ import annotations

import logging

import faust

from pipeline.kafka_admin import require_topics
from pipeline.metrics_http import serve_metrics
from pipeline.settings import Settings
from pipeline.topics import Topics
from triggers.agents import register
from triggers.metrics import TriggerMetrics

log = logging.getLogger(__name__)


def app_id(settings: Settings) -> str:
    return f"{settings.kafka.topic_prefix}-{settings.worker.app_id}-triggers"


def create_app(settings: Settings, metrics: TriggerMetrics | None = None) -> faust.App:
    topics = Topics.from_settings(settings.kafka)
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")]
    app = faust.App(
        app_id(settings),
        broker=brokers,
        store="memory://",
        datadir=str(settings.worker.data_dir / "triggers"),
        topic_partitions=topics.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        broker_commit_interval=1.0,
        autodiscover=False,
    )
    register(app, settings, metrics)
    return app


def run(settings: Settings) -> int:
    """Serve metrics (refusing default secrets first), create (or require) the topics, run the
    trigger App until stopped (blocks)."""
    from faust.worker import Worker

    metrics = TriggerMetrics()
    serve_metrics(settings, "triggers", metrics.registry)
    require_topics(settings.kafka, Topics.from_settings(settings.kafka).specs())
    (settings.worker.data_dir / "triggers").mkdir(parents=True, exist_ok=True)
    app = create_app(settings, metrics)
    log.info("triggers app %s starting", app.conf.id)
    worker = Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
