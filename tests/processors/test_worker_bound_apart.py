"""``worker.downstream_backlog_max`` with the triggers in a process of their own, on the real broker.

Two real processes as deploy/docker-compose.yml runs them: ``webhouse worker`` without extensions
(the bound on) and ``webhouse triggers run``. The raw topic holds a few thousand of the benches'
events before either starts. With no trigger process yet, the trigger groups never committed, so
the worker must count their input as unread and stop reading the raw topic well short of its end
(its log and its ``webhouse_stage_held_back`` gauge say so). Once the trigger process runs, every
raw event goes through: the worker commits them all, the enriched topic holds each one once, the
route and evaluate groups catch up, and the worker has read on.

A bound that counted only the groups of the worker's own process would see none here and let the
worker run to the end of the raw topic: the first check fails (as it does with the bound off).
The bound is below the trigger groups' input partitions (8): when the backlog counted each
partition's closing transaction marker as a record, a caught-up trigger process still left 8
"unread", the worker held back for good, and the second check failed (5 December 2026).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import GroupProgress, TriggersBehind, fresh_topics, preload, worker_settings
from bench.workload import build
from pipeline.settings import MetricsSettings, Settings
from pipeline.topics import Topics
from processors.worker.runner import group_id, start_worker_process
from tests.conftest import free_port
from tests.liveness import wait_for
from tests.processors.worker_support import SERDES, Outputs

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 4_000
BOUND = 5  # records the route and evaluate groups may leave unread: below their 8 input partitions
BATCH = 50  # small batches: the worker asks for the backlog once a second, and reads on until it knows
PARTITIONS = 2


def _with_worker(settings: Settings, **worker: object) -> Settings:
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=worker)})


def _held_back(port: int) -> float | None:
    """The worker stage's ``webhouse_stage_held_back`` on the worker's metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "webhouse_stage_held_back" and sample.labels.get("stage") == "worker":
                return float(sample.value)
    return None


def _standing(
    committed: Callable[[], int], alive: Callable[[], None], still_s: float, timeout_s: float
) -> int:
    """The worker's committed raw offsets once they are above 0 and have not moved for ``still_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        alive()
        now, value = time.monotonic(), committed()
        if value != last:
            last, since = value, now
        elif value > 0 and now - since >= still_s:
            return value
        time.sleep(0.3)
    raise AssertionError(f"the worker's committed raw offsets did not stand still for {still_s}s "
                         f"within {timeout_s}s (last {last} of {EVENTS})")  # fmt: skip


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_the_worker_waits_for_a_trigger_process_and_then_everything_goes_through(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    kafka = fresh_topics(kafka_bootstrap, PARTITIONS)
    topics = Topics.from_settings(kafka)
    workload = build(EVENTS, seed=3)
    preload(kafka_bootstrap, topics.raw_events, workload.messages)
    sent = {SERDES["enriched"].decode(value)["message_id"] for _, value in workload.messages}
    assert len(sent) == EVENTS

    # The deployed layout: the worker without extensions, the same settings otherwise for both.
    settings = _with_worker(
        worker_settings(kafka, tmp_path / "data", triggers=True, batch=BATCH), downstream_backlog_max=BOUND
    )
    port = free_port()
    worker_alone = _with_worker(settings, extensions=[], instance_id="w0").model_copy(
        update={"metrics": MetricsSettings(port=port)}
    )
    triggers_apart = _with_worker(settings, instance_id="t0")
    worker_log, triggers_log = tmp_path / "worker.log", tmp_path / "triggers.log"

    progress = GroupProgress(kafka_bootstrap, group_id(settings))
    behind = TriggersBehind(triggers_apart)
    outputs = Outputs(kafka_bootstrap, topics)
    processes = [start_worker_process(worker_alone, worker_log)]

    def committed() -> int:
        return progress.committed(topics.raw_events, PARTITIONS)

    def alive() -> None:
        for process, log in zip(processes, (worker_log, triggers_log), strict=False):
            if process.poll() is not None:
                raise AssertionError(f"{log.stem} exited {process.returncode}:\n{log.read_text()[-3000:]}")

    try:
        # No trigger process yet: the worker stops short of the raw topic's end, and stays there.
        held = _standing(committed, alive, still_s=4.0, timeout_s=60)
        assert held < EVENTS // 2, (
            f"the worker committed {held} of {EVENTS} raw events while no trigger process ran: it did "
            f"not hold back for the trigger groups of the other process (bound {BOUND})"
        )
        assert "holds back" in worker_log.read_text(), worker_log.read_text()[-3000:]
        wait_for("the worker's webhouse_stage_held_back at 1", lambda: _held_back(port) == 1.0, 10)
        time.sleep(2)
        assert committed() == held, "the worker read on while held back"

        processes.append(start_worker_process(triggers_apart, triggers_log, ("triggers", "run")))

        def all_committed() -> bool:
            alive()
            return committed() == EVENTS

        wait_for(f"the worker committing all {EVENTS} raw events", all_committed, 90)
        outputs.wait_until(lambda o: o.enriched_ids() == sent, timeout=30, settle=1.0)
        enriched = [r["message_id"] for r in outputs.records["enriched"]]
        assert len(enriched) == EVENTS, f"{len(enriched)} enriched events for {EVENTS} raw ones"
        assert outputs.records["dead"] == []

        def caught_up() -> bool:
            alive()
            return behind.caught_up()

        wait_for("the route and evaluate groups catching up", caught_up, 60)
        assert "reads on" in worker_log.read_text(), worker_log.read_text()[-3000:]
    finally:
        _stop(processes)
        outputs.close()
        behind.close()
        progress.close()
