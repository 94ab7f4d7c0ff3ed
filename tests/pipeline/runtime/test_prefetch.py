"""Each stage's consumer reads at most ``worker.prefetch_kib`` ahead of its work.

librdkafka's own bound (64 MiB per consumer) is what a lagging stage's consumer fills in a
catch-up: with the trigger stages on, about 130 MiB more resident (docs/performance.md, "Memory
over a long run").
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.errors import SettingsError
from pipeline.runtime.host import StageSpec, close_stages, head_first, runner_for
from pipeline.runtime.kafka import FETCH_QUEUE_BACKOFF_MS
from pipeline.runtime.metrics import RuntimeMetrics
from pipeline.runtime.stage import Incoming, RunnerView, Step, Stores
from pipeline.settings import KafkaSettings, Settings, WorkerSettings
from processors.worker.runner import downstream_groups, worker_stages


class Idle:
    name = "probe"
    inputs: tuple[str, ...] = ("in",)
    store_names: tuple[str, ...] = ()
    tick_interval_s = 60.0  # never ticks: the runner is not run

    def assign(self, partitions: frozenset[int], stores: Stores) -> None:
        return None

    def process(self, batch: list[Incoming], stores: Stores, now: datetime) -> Step:
        return Step()

    def tick(self, stores: Stores, view: RunnerView, now: datetime) -> Step:
        return Step()


def test_the_stage_consumer_prefetches_at_most_the_setting(tmp_path: Path) -> None:
    worker = WorkerSettings(data_dir=tmp_path, state_store="memory", prefetch_kib=2048)
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"), worker=worker)
    runner = runner_for(StageSpec(Idle(), "probe"), settings, RuntimeMetrics(CollectorRegistry()))
    try:
        assert runner._consumer_conf()["queued.max.messages.kbytes"] == 2048
    finally:
        runner.consumer.close()


def test_a_stage_that_emptied_its_prefetch_fetches_again_within_its_batch_wait(tmp_path: Path) -> None:
    """librdkafka waits ``fetch.queue.backoff.ms`` (its default 1,000 ms) before fetching again for a
    partition whose queue was full; a stage that empties its 4 MiB sooner would wait out
    ``batch_within_s`` (250 ms) and take a part of a batch. The runner was made with the
    property, so librdkafka knows it (an unknown one is refused when the consumer is made)."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        worker=WorkerSettings(data_dir=tmp_path, state_store="memory"),
    )
    runner = runner_for(StageSpec(Idle(), "probe"), settings, RuntimeMetrics(CollectorRegistry()))
    try:
        backoff_ms = runner._consumer_conf()["fetch.queue.backoff.ms"]
        assert backoff_ms == FETCH_QUEUE_BACKOFF_MS
        assert backoff_ms * 10 <= settings.worker.batch_within_s * 1000
    finally:
        runner.consumer.close()


def test_the_default_is_4_mib_not_librdkafkas_64() -> None:
    assert WorkerSettings().prefetch_kib == 4096


def test_the_worker_stage_alone_is_bounded_by_its_trigger_stages_backlog(tmp_path: Path) -> None:
    """``head_first``: the worker's runner knows the route and evaluate groups and their inputs (not
    the webhook deliveries: a slow endpoint must not hold the worker back); theirs know none. The
    groups ``triggers.stages.backlog_groups`` names are those of the stages it builds."""
    worker = WorkerSettings(data_dir=tmp_path, state_store="memory", downstream_backlog_max=123)
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"), worker=worker)
    registry = CollectorRegistry()
    specs = worker_stages(settings, registry)
    runners = head_first(specs, settings, RuntimeMetrics(registry), downstream_groups(settings))
    try:
        head, *others = runners
        groups = {s.stage.name: (s.group_id, tuple(s.stage.inputs)) for s in specs}
        assert head.stage.name == "worker" and head.config.downstream_max == 123
        assert head.config.downstream == dict([groups["triggers-route"], groups["triggers-evaluate"]])
        assert head.backlog is not None and all(r.backlog is None for r in others)
    finally:
        for runner in runners:
            runner.consumer.close()
        close_stages(specs)


def test_the_bound_counts_the_trigger_stages_running_in_another_process(tmp_path: Path) -> None:
    """The triggers in ``webhouse triggers run`` (``worker.extensions`` empty, as the compose file
    runs the worker): the worker still bounds its lead by their groups, through the broker."""
    apart = WorkerSettings(data_dir=tmp_path, state_store="memory", downstream_backlog_max=123, extensions=[])
    together = apart.model_copy(update={"extensions": ["triggers.stages"]})
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    groups = downstream_groups(Settings(kafka=kafka, worker=apart))
    assert groups == downstream_groups(Settings(kafka=kafka, worker=together))
    assert sorted(groups) == [
        f"{kafka.topic_prefix}-{apart.app_id}-triggers-{s}" for s in ("evaluate", "route")
    ]
    specs = worker_stages(Settings(kafka=kafka, worker=apart), CollectorRegistry())
    try:
        assert [s.stage.name for s in specs] == ["worker"]
        [runner] = head_first(
            specs, Settings(kafka=kafka, worker=apart), RuntimeMetrics(CollectorRegistry()), groups
        )
        try:
            assert runner.backlog is not None and runner.backlog.groups == groups
        finally:
            runner.consumer.close()
    finally:
        close_stages(specs)


def test_a_bound_with_no_group_to_count_is_refused(tmp_path: Path) -> None:
    """No module of ``worker.downstream_backlog_of`` installed: a bound set would bound nothing, so
    the start is refused rather than the bound ignored; without a bound nothing is asked."""
    worker = WorkerSettings(
        data_dir=tmp_path, state_store="memory", downstream_backlog_max=123,
        downstream_backlog_of=["no_such_module.stages"],
    )  # fmt: skip
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"), worker=worker)
    with pytest.raises(SettingsError, match="downstream_backlog_max is 123"):
        downstream_groups(settings)
    unbounded = settings.model_copy(
        update={"worker": worker.model_copy(update={"downstream_backlog_max": 0})}
    )
    assert downstream_groups(unbounded) == {}
