"""The view the worker writes with each enriched event is the view of the event it wrote.

The triggers' route reads the view from the headers instead of decoding the event
(``pipeline.event_view``, issue 11). These tests put the bench's workload (sign-ins, carts,
orders, e-mail and app events, crawlers, with user agents and pages in number) through the
worker stage, and require for every enriched event that the header's view equals the view
decoded from its bytes, and that the route writes byte for byte the same triggers inputs
from the headers as from decoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from bench.workload import build
from pipeline.event_view import RECEIVED_HEADER, VIEW_HEADER, EventView, event_view, header_view, view_json
from pipeline.runtime.control import is_control
from pipeline.runtime.memory import MemoryBroker, MemoryRunner
from pipeline.runtime.messages import Incoming
from pipeline.runtime.stage import Record
from pipeline.serde import SingleObjectSerde
from pipeline.settings import Settings, TriggerSettings, WorkerSettings
from pipeline.topics import Topics
from processors.worker.metrics import WorkerMetrics
from processors.worker.stage import WorkerStage
from triggers.core import Result
from triggers.metrics import TriggerMetrics
from triggers.stages import RouteStage

from .builders import RULES_DIR, at

EVENTS = SingleObjectSerde("customer_event")
NOW = at(0)


def _settings() -> Settings:
    return Settings(worker=WorkerSettings(extensions=[]), triggers=TriggerSettings(rules_dir=RULES_DIR))


@pytest.fixture(scope="module")
def enriched() -> list[Incoming]:
    """The enriched events the worker stage writes for 3,000 events of the bench's workload."""
    settings = _settings()
    topics = Topics.from_settings(settings.kafka)
    broker = MemoryBroker(topics.partitions)
    worker = MemoryRunner(lambda: WorkerStage(settings, WorkerMetrics(CollectorRegistry())), broker, "w")
    for i, (key, value) in enumerate(build(3_000, seed=5).messages):
        broker.append(Record(topics.raw_events, key, value, i % topics.partitions))
    for partition in range(topics.partitions):
        while batch := worker.take(topics.raw_events, partition, 500):
            worker.process(batch)
    return [m for m in broker.records(topics.enriched_events) if not is_control(m.headers)]


def test_every_enriched_event_carries_the_view_of_its_bytes(enriched: list[Incoming]) -> None:
    nobody = 0
    for message in enriched:
        carried = header_view(message.headers)
        assert carried is not None, "an enriched event without its view"
        body, received = carried
        record = EVENTS.decode(message.value)
        decoded = event_view(record)
        assert body == view_json(decoded)
        assert received == int(record["received_at"].timestamp() * 1000)
        if body == b"null":
            nobody += 1
            continue
        assert EventView.from_dict(json.loads(body)) == decoded
    assert len(enriched) > 2_500 and 0 < nobody < len(enriched) // 2  # crawlers are nobody's


def _route(messages: list[Incoming]) -> Iterator[Result]:
    stage = RouteStage(_settings(), TriggerMetrics(CollectorRegistry()))
    for message in messages:
        yield stage.core.route([message], NOW)


def test_the_route_writes_the_same_inputs_from_the_headers_as_from_decoding(
    enriched: list[Incoming],
) -> None:
    bare = [Incoming(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms, ()) for m in enriched]
    with_headers = [[(o.topic, o.key, o.value, o.partition) for o in r.outputs] for r in _route(enriched)]
    decoded = [[(o.topic, o.key, o.value, o.partition) for o in r.outputs] for r in _route(bare)]
    assert with_headers == decoded
    assert sum(map(len, with_headers)) > 2_000


def test_an_event_without_both_headers_is_decoded(enriched: list[Incoming]) -> None:
    """Events a worker from before the headers wrote (or another producer) are decoded."""
    message = next(m for m in enriched if dict(m.headers)[VIEW_HEADER] != b"null")
    only_view = tuple(h for h in message.headers if h[0] != RECEIVED_HEADER)
    assert header_view(only_view) is None
    stripped = Incoming(
        message.topic, message.partition, message.offset, message.key, message.value, 0, only_view
    )
    (routed,) = _route([stripped])
    (expected,) = _route([message])
    assert [o.value for o in routed.outputs] == [o.value for o in expected.outputs] != []
