"""Session tests run the production sessionizer: the worker stage on the in-memory runtime.

``ev`` builds a ``SessionEvent`` as the worker would build it from a raw Segment event (``raw_of``
is that raw event): fields the enrichment derives (device class, browser, referrer) come from
the raw event, not from the arguments, so every event a test writes is one a touchpoint can send.
``WorkerSessionizer`` sends such events one at a time to the raw topic of ``MemoryBroker`` and
lets ``WorkerStage`` (``processors.worker``) take each as a batch of one; it reads the verdicts
back from the stage's real outputs (enriched events, sessions) and its duplicate counter, and
``flush`` is the stage's timer on a quiet, caught-up partition (the idle sweep).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry

from pipeline.runtime.control import end_headers, is_control
from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.stage import Record, Step
from pipeline.serde import SingleObjectSerde
from pipeline.settings import SessionPolicySettings, Settings, WorkerSettings
from pipeline.topics import Topics
from processors.enrichment import Enricher
from processors.sessions import (
    Assignment,
    CloseRule,
    DeviceState,
    DuplicateEvent,
    LateEvent,
    Output,
    Session,
    SessionEvent,
    SessionPolicy,
    to_ms,
)
from processors.worker.core import session_event
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MINUTE_MS = 60_000
SHOP = "https://shop.example"
SEARCH = "https://www.google.com/search?q=shoes"
AGENTS = {
    "Firefox": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mobile Safari": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
}
EVENTS = SingleObjectSerde("customer_event")
SESSIONS = SingleObjectSerde("session")
_ENRICHER = Enricher()


def raw_of(event: SessionEvent) -> dict[str, Any]:
    """The raw event a touchpoint sends for ``event``: a page in the URL (or the page name), a
    referrer for ``search``, the campaign in ``context.campaign``, a user agent for the browser."""
    context: dict[str, Any] = {}
    record: dict[str, Any] = {
        "message_id": event.event_id,
        "type": "page" if event.is_page_view else event.call_type,
        "event": None if event.is_page_view else event.event_name,
        "channel": event.channel or "web",  # the schema requires one
        "anonymous_id": event.device_id,
        "user_id": event.customer_id,
        "timestamp": event.event_time,
        "received_at": event.event_time,  # the collector's clock caps the watermark: never below
        "context": context,
    }
    if event.referrer_class is not None:
        referrer = SEARCH if event.referrer_class == "search" else None
        context["page"] = {"url": f"{SHOP}{event.page}" if event.page else None, "referrer": referrer}
    else:
        record["name"] = event.page
    utm = (event.utm_source, event.utm_medium, event.utm_campaign, event.utm_term, event.utm_content)
    if any(utm):
        context["campaign"] = dict(zip(("source", "medium", "name", "term", "content"), utm, strict=True))
    if event.browser_family is not None:
        context["user_agent"] = AGENTS[event.browser_family]
    products = event.products_viewed or event.products_added or event.products_bought
    if products or event.revenue is not None or event.order_id is not None:
        record["commerce"] = {
            "products": [{"product_id": p} for p in products],
            "revenue": event.revenue,
            "order_id": event.order_id,
        }
    return record


def as_worker_sees(event: SessionEvent) -> SessionEvent:
    """``event`` as the worker's enrichment rebuilds it from ``raw_of(event)``."""
    record = EVENTS.decode(EVENTS.encode(raw_of(event)))
    enrichment = _ENRICHER.enrich(record)
    return session_event(record, enrichment, event.device_id, None)


def ev(event_id: str, minute: float, device: str = "d1", **fields: Any) -> SessionEvent:
    fields.pop("payload", None)  # the worker's payload is the event itself
    return as_worker_sees(SessionEvent(event_id, device, T0 + timedelta(minutes=minute), **fields))


def policy(**overrides: Any) -> SessionPolicy:
    """A policy in minutes: gap 5, lateness 5, max duration 60, unless overridden."""
    values: dict[str, Any] = {
        "gap_ms": 5 * MINUTE_MS,
        "allowed_lateness_ms": 5 * MINUTE_MS,
        "max_duration_ms": 60 * MINUTE_MS,
    }
    values.update(overrides)
    return SessionPolicy(**values)


def settings_for(pol: SessionPolicy, device_cache: int = 50_000) -> Settings:
    """Worker settings whose session policy is ``pol`` (the settings count whole seconds)."""
    seconds = {name: ms // 1000 for name, ms in
               (("inactivity_gap_s", pol.gap_ms), ("max_duration_s", pol.max_duration_ms),
                ("allowed_lateness_s", pol.allowed_lateness_ms))}  # fmt: skip
    session = SessionPolicySettings(
        **seconds,
        split_at_midnight=pol.split_at_midnight,
        midnight_timezone=pol.timezone,
        split_on_campaign_change=pol.split_on_campaign_change,
        dedup_memory=pol.dedup_memory,
    )
    settings = Settings(worker=WorkerSettings(session=session, extensions=[], device_cache=device_cache))
    assert SessionPolicy.from_settings(settings.worker.session) == pol, "a policy finer than seconds"
    return settings


def session_of(record: dict[str, Any]) -> Session:
    """A ``Session`` from its Avro record (the inverse of ``Session.to_record``)."""
    values = dict(record)
    for name in ("products_viewed", "products_added", "products_bought", "merged_session_ids"):
        values[name] = tuple(values[name])
    values["closed_by"] = CloseRule(values["closed_by"])
    return Session(**values)


class WorkerSessionizer:
    """One partition of the worker stage, fed one event per batch (see the module docstring)."""

    def __init__(self, pol: SessionPolicy, device_cache: int = 50_000, state_dir: Path | None = None) -> None:
        self.policy = pol
        settings = settings_for(pol, device_cache)
        self.topics = Topics.from_settings(settings.kafka)
        self.registry = CollectorRegistry()
        metrics = WorkerMetrics(self.registry)
        self.broker = MemoryBroker(1)
        self.runner = MemoryRunner(
            lambda: WorkerStage(settings, metrics), self.broker, "sessions", state_dir=state_dir
        )
        self.sent: dict[str, SessionEvent] = {}
        self.accepted: dict[str, list[SessionEvent]] = {}  # by session key: on their way, visit not closed

    @property
    def stage(self) -> WorkerStage:
        return cast(WorkerStage, self.runner.stage)

    @property
    def watermark_ms(self) -> int:
        return self.stage.core.watermark(0)

    @property
    def states(self) -> dict[str, DeviceState]:
        return {k: d.session for k, d in self.stage.core.devices.items() if d.session is not None}

    def process(self, event: SessionEvent) -> list[Output]:
        """One event in partition order: its own verdict plus whatever the watermark now releases."""
        self.sent[event.event_id] = event
        self.broker.append(Record(self.topics.raw_events, event.device_id.encode(),
                                  EVENTS.encode(raw_of(event)), 0))  # fmt: skip
        before = self._duplicates()
        step = self.runner.process(self.runner.take(self.topics.raw_events, 0, 1))
        duplicates: list[Output] = [DuplicateEvent(event.event_id)] * int(self._duplicates() - before)
        return duplicates + self._outputs(step)

    def process_many(self, events: list[SessionEvent]) -> list[Output]:
        return [out for event in events for out in self.process(event)]

    def flush(self) -> list[Output]:
        """An end of input on the partition: every waiting event goes out, every open visit closes
        (``idle_sweep``). The end record is read as the worker reads it, then input may resume."""
        self.broker.append(Record(self.topics.raw_events, None, b"", 0, end_headers()))
        return self._outputs(self.runner.process(self.runner.take(self.topics.raw_events, 0, 1)))

    def restarted(self) -> WorkerSessionizer:
        """A new stage rebuilt from the changelogs, as after a crash (the runtime's restart)."""
        self.runner.restart()
        return self

    def redeliver(self, count: int) -> list[Output]:
        """The last ``count`` raw records read again, as a consumer does after a commit it lost."""
        position = (self.topics.raw_events, 0)
        self.runner.committed[position] = max(0, self.runner.committed.get(position, 0) - count)
        return self._outputs(self.runner.process(self.runner.take(*position, count)))

    def _duplicates(self) -> float:
        sample = self.registry.get_sample_value("webhouse_worker_events_total", {"outcome": "duplicate"})
        return sample or 0.0

    def _outputs(self, step: Step) -> list[Output]:
        """The stage's outputs as the session logic's: an enriched event goes on at arrival with
        its session key and no session id, so its ``Assignment`` is read off the visit that
        closes over it, by key, time and id (what the ``events_sessioned`` view does)."""
        outputs: list[Output] = []
        for record in step.outputs:
            if record.topic == self.topics.sessions and not is_control(record.headers):
                session = session_of(SESSIONS.decode(record.value or b""))
                outputs.extend(self._assigned(session))
                outputs.append(session)
            elif record.topic == self.topics.enriched_events and not is_control(record.headers):
                enriched = EVENTS.decode(record.value or b"")
                event = self.sent[enriched["message_id"]]
                assert enriched["enrichment"]["session_id"] is None, "a session id before the visit closed"
                if enriched["enrichment"]["is_late"]:
                    outputs.append(LateEvent(event, self.watermark_ms))
                else:
                    assert enriched["enrichment"]["session_key"] == event.device_id
                    self.accepted.setdefault(event.device_id, []).append(event)
            elif record.topic == self.topics.dead_letters:
                raise AssertionError(f"the worker dead-lettered an event: {record.value!r}")
        return outputs

    def _assigned(self, session: Session) -> list[Assignment]:
        """The accepted events of ``session``'s key from its (start, first id) to its (end, last id)."""
        low = (to_ms(session.start), session.first_event_id)
        high = (to_ms(session.end), session.last_event_id)
        waiting = self.accepted.get(session.anonymous_id, [])
        inside = sorted((e for e in waiting if low <= (e.time_ms, e.event_id) <= high),
                        key=lambda e: (e.time_ms, e.event_id))  # fmt: skip
        taken = {e.event_id for e in inside}
        self.accepted[session.anonymous_id] = [e for e in waiting if e.event_id not in taken]
        return [Assignment(event, session.session_id) for event in inside]


def run(events: list[SessionEvent], pol: SessionPolicy) -> list[Output]:
    """Every output of feeding ``events`` in order to one partition, then flushing."""
    sessionizer = WorkerSessionizer(pol)
    return sessionizer.process_many(events) + sessionizer.flush()


def sessions(outputs: list[Output]) -> list[Session]:
    return [out for out in outputs if isinstance(out, Session)]


def assignments(outputs: list[Output]) -> dict[str, str]:
    return {out.event_id: out.session_id for out in outputs if isinstance(out, Assignment)}


def late_ids(outputs: list[Output]) -> list[str]:
    return [out.event.event_id for out in outputs if isinstance(out, LateEvent)]
