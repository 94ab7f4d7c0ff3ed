"""Every simulated event is one the real collector accepts and the Avro model encodes; every
malformed one is refused with the reason its kind names; the enrichment tells crawlers apart."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.collector.segment import map_event
from pipeline.errors import ValidationError
from pipeline.serde import SingleObjectSerde
from processors.enrichment.useragent import parse_user_agent
from tools.simulate import Simulation

RECEIVED = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)


def test_valid_events_map_and_encode_and_malformed_ones_are_refused_by_kind(small_sim: Simulation) -> None:
    serde = SingleObjectSerde("customer_event")
    refused: dict[str, str] = {}
    for event in small_sim.events:
        body = {**event.body, "sentAt": "2026-11-23T12:00:04.000Z"}
        try:
            record = map_event(body, received_at=RECEIVED, source="dev")
        except ValidationError as exc:
            assert event.malformed is not None, f"{exc} in {body}"
            refused[body["messageId"]] = exc.reason
            continue
        assert event.malformed is None, f"malformed {event.malformed} accepted: {body}"
        assert serde.decode(serde.encode(record, "t"), "t")["message_id"] == body["messageId"]
        assert record["channel"] == event.channel
        if body.get("type") == "identify" and "address" in body["traits"]:  # sign-ups carry all traits
            traits = record["traits"]
            assert traits["email"] and traits["city"] and traits["country"] and traits["age"]
    assert refused == small_sim.truth.malformed_message_ids


def test_the_enrichment_flags_the_crawlers_and_only_them(small_sim: Simulation) -> None:
    crawler_ids = {b.anonymous_id for b in small_sim.truth.bots}
    agents: dict[str, bool] = {}
    for event in small_sim.events:
        agent = event.body.get("context", {}).get("userAgent")
        if agent and event.malformed is None:
            agents[agent] = event.body.get("anonymousId") in crawler_ids
    assert any(agents.values()) and not all(agents.values())
    assert all(parse_user_agent(agent).is_bot == is_crawler for agent, is_crawler in agents.items())
