"""The trigger stages in a process of their own (`webhouse triggers run`).

Normally the triggers run in the worker's process (``worker.extensions``). Running them
apart lets them scale, restart and be tested on their own: the same stages and consumer
groups, reading the enriched events and sessions topics the worker writes.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from pipeline.kafka_admin import require_topics
from pipeline.metrics_http import serve_metrics
from pipeline.runtime.host import close_stages, prepare_changelogs, process_health, run_stages, runner_for
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.safe_defaults import refuse_default_secrets
from pipeline.settings import Settings
from pipeline.topics import Topics
from triggers.stages import stages_for

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    """Serve metrics (refusing default secrets first), create (or require) the topics, run the
    trigger stages until stopped (blocks)."""
    if settings.metrics.port:  # before touching Kafka: a default secret on a reachable bind stops the start
        refuse_default_secrets(settings, "triggers", settings.metrics.host)
    registry = CollectorRegistry()
    require_topics(settings.kafka, Topics.from_settings(settings.kafka).specs())
    specs = stages_for(settings, registry)
    prepare_changelogs(settings, specs)
    metrics = RuntimeMetrics(registry)
    runners = [runner_for(spec, settings, metrics) for spec in specs]
    serve_metrics(settings, "triggers", registry, process_health(runners))
    log.info("triggers starting: %s", [s.stage.name for s in specs])
    return run_stages(runners, settings.health.stop_within_s, on_stop=lambda: close_stages(specs),
                      gc_threshold=settings.worker.gc_threshold)  # fmt: skip
