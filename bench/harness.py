"""What the stream benches share: a broker, fresh topics holding the same events, and measuring a process.

A contender is a process that consumes the raw topic. Its figures are taken the same way
for all: events/s and CPU per event over the steady part of the run (first event or commit
seen -> last), so start-up (faust's, a consumer group's join) is left out and reported
apart as wall time, and peak RSS (the kernel's high-water mark, ``VmHWM``). CPU is the
process's user + system time, all its threads (librdkafka's included).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pipeline.kafka_admin import ensure_topics
from pipeline.settings import KafkaSettings, MetricsSettings, SessionPolicySettings, Settings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.runner import group_id as app_id
from processors.worker.runner import start_worker_process
from triggers.stages import DeliverStage, consumer_groups

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


class BenchError(RuntimeError):
    """A contender failed or did not finish: the figures of that run would be meaningless."""


@dataclass(slots=True)
class Run:
    """One contender's run: ``events`` processed in ``seconds`` of steady state using ``cpu_s``."""

    contender: str
    events: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    wall_s: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6 if self.events else float("nan")

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "events_per_s": self.events_per_s, "cpu_us_per_event": self.cpu_us_per_event}


# -- processes ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_mb(pid: int, field: str) -> float:
    """A size from ``/proc/PID/status`` in MiB (``VmHWM``: peak resident, ``VmRSS``: resident now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM")


def run_reporting_child(contender: str, command: Sequence[str], timeout_s: float, log: Path) -> Run:
    """A child that measures itself and prints one JSON object as its last stdout line."""
    started = time.monotonic()
    with log.open("ab") as err:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, timeout=timeout_s, check=False)
    wall = time.monotonic() - started
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"{contender} exited {done.returncode}; see {log}")
    report = json.loads(lines[-1])
    return Run(contender, report["events"], report["seconds"], report["cpu_s"], report["peak_rss_mb"], wall)


# -- Kafka ----------------------------------------------------------------------------------
def fresh_topics(bootstrap: str, partitions: int) -> KafkaSettings:
    """A new topic prefix with the project's topics created: every run starts from empty topics."""
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
        default_partitions=partitions,
    )
    ensure_topics(bootstrap, Topics.from_settings(kafka).specs())
    return kafka


def preload(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Write the events as the collector does (keyed by device, lz4, idempotent) and wait for acks."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120) != 0:
        raise BenchError(f"could not write the events to {topic}")


class GroupProgress:
    """How many messages of some topics a consumer group has committed, and how many they hold."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def committed(self, topic: str, partitions: int) -> int:
        """The group's committed offsets summed. The read may take a minute: with 10 s, one read
        timed out on a broker that could no longer write (its disk full) and ended a 10M-event run
        before the bench could see that the worker had exited."""
        wanted = [TopicPartition(topic, p) for p in range(partitions)]
        try:
            parts = self.consumer.committed(wanted, timeout=60)
        except KafkaException as exc:  # the group's coordinator is still being set up
            if exc.args[0].code() in COORDINATOR_NOT_READY:
                return 0
            raise
        return sum(max(0, tp.offset) for tp in parts)

    def produced(self, topic: str, partitions: int) -> int:
        return sum(
            self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        )

    def close(self) -> None:
        self.consumer.close()


# -- the webhouse worker ----------------------------------------------------------------------
def worker_settings(
    kafka: KafkaSettings,
    data_dir: Path,
    *,
    triggers: bool,
    batch: int = 2000,
    within: float | None = None,
    debug: bool = False,
    state_store: Literal["disk", "memory"] = "disk",
    gc_threshold: int | None = None,
) -> Settings:
    """The worker as deployed, on the bench's topics; ``triggers`` keeps the default extensions;
    ``gc_threshold`` None keeps ``worker.gc_threshold``'s default."""
    worker = WorkerSettings(
        data_dir=data_dir,
        state_store=state_store,
        batch_max_events=batch,
        batch_within_s=within if within is not None else WorkerSettings().batch_within_s,
        session=SessionPolicySettings(idle_close_interval_s=1.0),
        **({} if triggers else {"extensions": []}),
        **({} if gc_threshold is None else {"gc_threshold": gc_threshold}),
    )
    return Settings(
        kafka=kafka, worker=worker, metrics=MetricsSettings(port=0), log_level="DEBUG" if debug else "INFO"
    )


@dataclass(slots=True)
class WorkerRun:
    run: Run
    pids: list[int]
    enriched: int


def _instance(settings: Settings, i: int) -> Settings:
    return settings.model_copy(update={"worker": settings.worker.model_copy(update={"instance_id": f"w{i}"})})


class TriggersBehind:
    """Whether the worker's trigger stages (route, evaluate) have read what their input topics held
    at the first ``caught_up`` call: their groups' committed offsets against those ends, a transaction
    marker per partition allowed. What the worker adds later (visits closed when the input has
    gone idle, the stages' own reports) is left out, as it is for the worker without triggers."""

    def __init__(self, settings: Settings) -> None:
        self.partitions = settings.kafka.default_partitions
        self.inputs: list[tuple[GroupProgress, str]] = []
        self.ends: int | None = None
        if settings.worker.extensions:
            for group, topics in consumer_groups(settings).items():
                if not group.endswith(DeliverStage.name):  # webhooks: at least once, nothing to send here
                    progress = GroupProgress(settings.kafka.bootstrap_servers, group)
                    self.inputs.extend((progress, topic) for topic in topics)

    def caught_up(self) -> bool:
        """The first call takes the moment: the ends the later calls are measured against."""
        if self.ends is None:
            self.ends = sum(g.produced(t, self.partitions) for g, t in self.inputs)
        committed = sum(g.committed(t, self.partitions) for g, t in self.inputs)
        return committed >= self.ends - len(self.inputs) * self.partitions

    def close(self) -> None:
        for progress in {id(g): g for g, _ in self.inputs}.values():
            progress.close()


def run_workers(
    contender: str,
    settings: Settings,
    events: int,
    log_dir: Path,
    workers: int = 1,
    timeout_s: float = 1800,
    on_started: Callable[[list[int]], None] | None = None,
    triggers_apart: bool = False,
) -> WorkerRun:
    """``webhouse worker`` child process(es) until the group has committed every raw event.

    ``triggers_apart``: the workers run without their trigger stages, and one ``webhouse triggers
    run`` process runs them (the same stages and groups); its CPU counts with the workers'.

    Steady state is first commit -> the poll at which the group has committed ``events`` and the
    trigger stages (when on) have read what the worker had written by then (``TriggersBehind``);
    CPU is sampled at the same two polls.
    Until 3 December 2026 the run ended at the raw commit: in a catch-up the evaluate stage lags
    the worker stage, and its backlog was left out (``bench/worker_memory.py`` shows that lag).
    The enriched output is then counted (after the idle sweep) as a check that every event went
    through.
    """
    kafka, topics = settings.kafka, Topics.from_settings(settings.kafka)
    p = kafka.default_partitions
    start = time.monotonic()
    procs = _start_workers(contender, settings, log_dir, workers, triggers_apart)
    if on_started is not None:
        on_started([w.pid for w in procs])
    progress = GroupProgress(kafka.bootstrap_servers, app_id(settings))
    triggers = TriggersBehind(settings)
    try:
        first, last = _until_caught_up(contender, procs, progress, triggers, topics.raw_events, p, events,
                                       (start, timeout_s), log_dir)  # fmt: skip
        peaks = [peak_rss_mb(w.pid) for w in procs]
        enriched = _enriched_within(progress, topics.enriched_events, p, events, 30)
    finally:
        progress.close()
        triggers.close()
        for w in procs:
            w.terminate()
        for w in procs:
            w.wait(30)
    (t0, n0, cpu0), (now, consumed, cpu) = first, last
    if consumed > n0:  # the usual case: several commits in the run
        run = Run(contender, consumed - n0, now - t0, cpu - cpu0, max(peaks), now - start)
    else:  # one commit held everything (a tiny run): count from the start, start-up included
        run = Run(contender, consumed, now - start, cpu, max(peaks), now - start)
    run.extra["enriched_out"] = enriched
    return WorkerRun(run, [w.pid for w in procs], enriched)


def _start_workers(contender: str, settings: Settings, log_dir: Path, workers: int,
                   triggers_apart: bool) -> list[subprocess.Popen[bytes]]:  # fmt: skip
    """The worker processes, and with ``triggers_apart`` the trigger process after them."""
    bare = settings.model_copy(update={"worker": settings.worker.model_copy(update={"extensions": []})})
    each = bare if triggers_apart else settings
    procs = [
        start_worker_process(_instance(each, i), log_dir / f"{contender}-{i}.log") for i in range(workers)
    ]
    if triggers_apart:
        log = log_dir / f"{contender}-triggers.log"
        procs.append(start_worker_process(_instance(settings, workers), log, ("triggers", "run")))
    return procs


Poll = tuple[float, int, float]  # (monotonic time, raw events committed, CPU seconds of the processes)


def _until_caught_up(contender: str, procs: list[subprocess.Popen[bytes]], progress: GroupProgress,
                     triggers: TriggersBehind, raw_topic: str, partitions: int, events: int,
                     window: tuple[float, float], log_dir: Path) -> tuple[Poll, Poll]:  # fmt: skip
    """The first poll with a commit and the one at which everything is through (see
    ``run_workers``); BenchError when a process ends or ``window`` (start, seconds) passes first."""
    start, timeout_s = window
    first: Poll | None = None
    while True:
        consumed = progress.committed(raw_topic, partitions)
        now = time.monotonic()
        cpu = sum(cpu_seconds(w.pid) for w in procs)
        if consumed and first is None:
            first = (now, consumed, cpu)
        if first is not None and consumed >= events and triggers.caught_up():
            return first, (now, consumed, cpu)
        if now - start > timeout_s or any(w.poll() is not None for w in procs):
            raise BenchError(
                f"{contender}: {consumed} of {events} processed after {now - start:.0f} s; logs in {log_dir}"
            )
        time.sleep(0.25)


def _enriched_within(progress: GroupProgress, topic: str, partitions: int, events: int, wait_s: float) -> int:
    """The enriched events written, once all are there or after ``wait_s`` (the idle sweep)."""
    enriched, deadline = 0, time.monotonic() + wait_s
    while enriched < events and time.monotonic() < deadline:
        enriched = progress.produced(topic, partitions)
        time.sleep(0.5)
    return enriched
