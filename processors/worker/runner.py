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

from pipeline.errors import SettingsError
from pipeline.kafka_admin import require_topics
from pipeline.metrics_http import serve_metrics
from pipeline.settings import ENV_PREFIX, Settings
from pipeline.topics import Topics
from processors.worker.app import create_app, register_extensions
from processors.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    """Serve metrics (refusing default secrets first), create (or require) the project topics,
    run the faust worker until stopped (blocks)."""
    from faust.worker import Worker

    metrics = WorkerMetrics()
    serve_metrics(settings, "worker", metrics.registry)
    topics = Topics.from_settings(settings.kafka)
    require_topics(settings.kafka, topics.specs())
    check_copartitioned(settings.kafka.bootstrap_servers, topics)
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, metrics)
    extensions = register_extensions(app, settings)
    log.info("worker %s starting; extensions: %s", app.conf.id, extensions or "none")
    worker = Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


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


def start_worker_process(settings: Settings, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """``webhouse worker`` in a child process with these settings; the caller stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    command = [sys.executable, "-m", "tools.cli", "worker"]
    if log_file is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
