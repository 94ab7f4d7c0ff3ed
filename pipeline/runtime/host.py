"""One process, several stages: each runs in its own thread as its own consumer group member.

confluent-kafka's consume, produce and commit release the GIL while they wait, so the
stages' I/O overlaps; their Python work shares one core, as faust's agents did. A
stage that fails stops the process (exit code 1), and one that makes no progress while
it has work (``pipeline.health``: no partitions assigned, stuck in a commit, or records left
unread, ``KafkaRunner._behind``, for ``health.stall_after_s``) stops it with exit code 3,
so that a supervisor restarts it: nothing is lost, since uncommitted work is read again.
SIGTERM and SIGINT stop every stage at its next batch boundary, within
``health.stop_within_s``; each leaves its group, so partitions move at once.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence

from pipeline.health import EXIT_STALLED, AllHealth, Health, StallExit, Watchdog, stop_on_signals
from pipeline.immutable import immutable
from pipeline.kafka_admin import ensure_topics, may_create_topics
from pipeline.runtime.kafka import KafkaRunner, RunnerConfig
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import Stage
from pipeline.settings import Settings
from pipeline.topics import Topics

log = logging.getLogger(__name__)


@immutable
class StageSpec:
    stage: Stage
    group_id: str
    transactional: bool = True  # False: at-least-once, for stages with side effects outside Kafka


def runner_for(
    spec: StageSpec,
    settings: Settings,
    metrics: RuntimeMetrics,
    downstream: Mapping[str, tuple[str, ...]] | None = None,
) -> KafkaRunner:
    """The stage's runner, with a ``Health`` of its own (``settings.health.stall_after_s``).
    ``downstream``: consumer groups (and the topics they read) whose backlog bounds its lead
    (``worker.downstream_backlog_max``), in this process or another."""
    topics = Topics.from_settings(settings.kafka)
    w = settings.worker
    config = RunnerConfig(
        bootstrap=settings.kafka.bootstrap_servers,
        group_id=spec.group_id,
        changelogs={name: topics.changelog(spec.group_id, name) for name in spec.stage.store_names},
        batch_max_events=w.batch_max_events,
        batch_within_s=w.batch_within_s,
        prefetch_kib=w.prefetch_kib,
        session_timeout_s=w.group_session_timeout_s,
        transaction_timeout_s=w.transaction_timeout_s,
        instance_id=w.instance_id or f"{socket.gethostname()}-{os.getpid()}",
        transactional=spec.transactional,
        state_dir=w.data_dir / "state" / spec.group_id if w.state_store == "disk" else None,
        downstream=dict(downstream or {}),
        downstream_max=w.downstream_backlog_max,
    )
    health = Health(
        spec.stage.name, settings.health.stall_after_s, call_within_s=settings.health.commit_within_s
    )
    return KafkaRunner(spec.stage, config, metrics, health)


def prepare_changelogs(settings: Settings, specs: list[StageSpec]) -> None:
    """Create the stores' changelog topics (compacted, one partition per input partition)."""
    topics = Topics.from_settings(settings.kafka)
    wanted = [topics.changelog_spec(s.group_id, name) for s in specs for name in s.stage.store_names]
    if wanted and may_create_topics(settings.kafka):
        ensure_topics(settings.kafka.bootstrap_servers, wanted, settings.kafka.replication_factor)


def process_health(runners: list[KafkaRunner]) -> AllHealth:
    """What the process's ``/health`` and ``/health/ready`` answer: every stage's health."""
    return AllHealth([r.health for r in runners])


def head_first(
    specs: Sequence[StageSpec],
    settings: Settings,
    metrics: RuntimeMetrics,
    downstream: Mapping[str, tuple[str, ...]],
) -> list[KafkaRunner]:
    """Runners of a chain of stages (the first feeds the others): the first one's lead bounded by
    the backlog of ``downstream`` (which may run here or elsewhere), the others unbounded."""
    return [
        runner_for(spec, settings, metrics, downstream if i == 0 else None) for i, spec in enumerate(specs)
    ]


def close_stages(specs: Sequence[StageSpec]) -> None:
    """Let each stage that holds something outside Kafka (the alert stage's HTTP session and event
    loop) release it, once every runner has stopped."""
    for spec in specs:
        close = getattr(spec.stage, "close", None)
        if close is not None:
            close()


def collect_young_garbage_every(threshold: int) -> None:
    """Python's young-generation threshold (``worker.gc_threshold``; 0 leaves it). The stages make
    and drop many small dicts and records per event, and at the default of 700 the collector ran
    every few events and, every hundred runs, could walk the whole heap of stored states: 20 us of CPU
    per event at 40,000 events, growing with the state. Reference counting frees that garbage
    anyway; only cycles wait a little longer. The older generations keep their thresholds. The sink
    does the same (``webhouse.gc_threshold``): a batch of it holds up to 50,000 decoded events."""
    if threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(threshold, middle, old)


def run_stages(
    runners: list[KafkaRunner],
    stop_within_s: float = 25.0,
    stop: threading.Event | None = None,
    on_stop: Callable[[], None] | None = None,
    gc_threshold: int = 0,
) -> int:
    """Run until stopped: 0 after a clean stop (SIGTERM/SIGINT, bounded by ``stop_within_s``), 1 when
    a stage failed, ``EXIT_STALLED`` when a stage made no progress while it had work."""
    collect_young_garbage_every(gc_threshold)
    stop = stop or threading.Event()
    failed: list[str] = []

    def run(runner: KafkaRunner) -> None:
        try:
            runner.run(stop)
        except BaseException:
            log.exception("stage %s failed; stopping the process", runner.stage.name)
            failed.append(runner.stage.name)
            stop.set()

    if threading.current_thread() is threading.main_thread():
        stop_on_signals(stop.set, "worker", stop_within_s)
    watchdogs = [Watchdog(r.health, StallExit(stop, grace_s=stop_within_s)).start() for r in runners]
    threads = [threading.Thread(target=run, args=(r,), name=r.stage.name, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.2)
    for watchdog in watchdogs:
        watchdog.close()
    if on_stop is not None:
        on_stop()
    if failed:
        return 1
    return EXIT_STALLED if process_health(runners).stalled else 0
