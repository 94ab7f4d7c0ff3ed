"""Running the worker: blocking in this process (the CLI), or as a child process (tests, demo).

A child gets its settings through ``WEBHOUSE_<SECTION>`` environment variables
holding each section as JSON (pydantic-settings parses them), so it runs exactly
the configuration the parent built, through the real ``webhouse worker`` command.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.errors import SettingsError
from pipeline.kafka_admin import require_topics
from pipeline.metrics_http import serve_metrics
from pipeline.runtime.host import (
    StageSpec,
    close_stages,
    head_first,
    prepare_changelogs,
    process_health,
    run_stages,
)
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.safe_defaults import refuse_default_secrets
from pipeline.settings import ENV_PREFIX, Settings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage

log = logging.getLogger(__name__)


def group_id(settings: Settings) -> str:
    """The worker's consumer group and changelog prefix; under the topic prefix so test runs never meet."""
    return f"{settings.kafka.topic_prefix}-{settings.worker.app_id}"


def worker_stages(settings: Settings, registry: CollectorRegistry) -> list[StageSpec]:
    """The worker's stage, then those of ``worker.extensions`` (default: the triggers)."""
    specs = [StageSpec(WorkerStage(settings, WorkerMetrics(registry)), group_id(settings))]
    return specs + extension_stages(settings, registry)


def extension_stages(settings: Settings, registry: CollectorRegistry) -> list[StageSpec]:
    """``<module>.stages_for(settings, registry)`` for each of ``settings.worker.extensions``; a module
    that is not installed is skipped, one that fails stops the start (no half-configured worker)."""
    specs: list[StageSpec] = []
    for name in settings.worker.extensions:
        module = _installed(name, "worker.extensions")
        if module is not None:
            specs.extend(module.stages_for(settings, registry))
    return specs


def _installed(name: str, setting: str) -> Any:
    """The module ``name``, or None (logged) when it is not installed; one that fails to import raises."""
    import importlib.util

    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        log.info("%s: module %s not installed; skipped", setting, name)
        return None
    return importlib.import_module(name)


def run_worker(settings: Settings) -> int:
    """Serve metrics (refusing default secrets first), create (or require) the project topics,
    run the stages until stopped (blocks)."""
    if settings.metrics.port:  # before touching Kafka: a default secret on a reachable bind stops the start
        refuse_default_secrets(settings, "worker", settings.metrics.host)
    registry = CollectorRegistry()
    topics = Topics.from_settings(settings.kafka)
    require_topics(settings.kafka, topics.specs())
    check_copartitioned(settings.kafka.bootstrap_servers, topics)
    downstream = downstream_groups(settings)  # worker.downstream_backlog_max bounds the worker's lead by them
    specs = worker_stages(settings, registry)
    prepare_changelogs(settings, specs)
    runtime_metrics = RuntimeMetrics(registry)
    runners = head_first(specs, settings, runtime_metrics, downstream)
    serve_metrics(settings, "worker", registry, process_health(runners))
    log.info("worker %s starting; stages: %s", group_id(settings), [s.stage.name for s in specs])
    return run_stages(runners, settings.health.stop_within_s, on_stop=lambda: close_stages(specs),
                      gc_threshold=settings.worker.gc_threshold)  # fmt: skip


def downstream_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The consumer groups (and the topics they read) whose backlog bounds the worker stage's lead:
    ``backlog_groups(settings)`` of each module of ``worker.downstream_backlog_of``, whether their
    stages run in this process (``worker.extensions``) or in ``webhouse triggers run``, as the
    compose file runs them; none without a bound. A bound with no group to count would bound
    nothing, and the lag it was set to hold would grow unseen: the start is refused instead."""
    bound = settings.worker.downstream_backlog_max
    if not bound:
        return {}
    groups: dict[str, tuple[str, ...]] = {}
    for name in settings.worker.downstream_backlog_of:
        module = _installed(name, "worker.downstream_backlog_of")
        if module is not None:
            groups.update(module.backlog_groups(settings))
    if not groups:
        raise SettingsError(
            f"worker.downstream_backlog_max is {bound}, but no module of worker.downstream_backlog_of "
            f"({list(settings.worker.downstream_backlog_of)}) is installed and names a consumer group to "
            "count: unset the bound, or name the trigger stages' module (triggers.stages)"
        )
    return groups


def check_copartitioned(bootstrap: str, topics: Topics) -> None:
    """Outputs go to the raw event's partition number: every keyed topic needs the same count."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    names = (topics.raw_events, topics.enriched_events, topics.sessions, topics.identity)
    counts = {name: len(metadata.topics[name].partitions) for name in names if name in metadata.topics}
    if len(set(counts.values())) > 1:
        raise SettingsError(f"topics are not co-partitioned (partition counts {counts}); recreate them "
                            "with kafka.default_partitions partitions")  # fmt: skip


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child process load exactly ``settings``."""
    env = {}
    for section in type(settings).model_fields:
        value = getattr(settings, section)
        dumped = value.model_dump_json() if hasattr(value, "model_dump_json") else str(value)
        env[f"{ENV_PREFIX}{section.upper()}"] = dumped
    return env


def start_worker_process(
    settings: Settings, log_file: Path | None = None, command_args: tuple[str, ...] = ("worker",)
) -> subprocess.Popen[bytes]:
    """``webhouse worker`` (or another webhouse command, ``command_args``: ``("triggers", "run")``)
    in a child process with these settings; the caller stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    command = [sys.executable, "-m", "tools.cli", *command_args]
    if log_file is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
