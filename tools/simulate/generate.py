"""Generation, pure: a config in, the whole event stream and its ground truth out.

Every actor (customer, crawl, the malformed batch) draws from its own random stream seeded
by ``(seed, actor)``, so the run is reproducible byte for byte and adding a customer does not
change the others. The stream is sorted by event time (ties: actor, then the actor's own
order), which keeps each actor's messages in the order they happened.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from tools.simulate.bots import simulate_crawl
from tools.simulate.campaigns import plan_campaigns
from tools.simulate.catalog import build_catalog
from tools.simulate.config import SimulationConfig
from tools.simulate.derive import derive_truth
from tools.simulate.facts import Facts
from tools.simulate.malformed import simulate_malformed
from tools.simulate.messages import SimEvent
from tools.simulate.people import Person, make_person
from tools.simulate.timeline import simulate_person
from tools.simulate.truth import GroundTruth


@dataclass(frozen=True, slots=True)
class Simulation:
    config: SimulationConfig
    events: tuple[SimEvent, ...]  # event-time order
    truth: GroundTruth

    def jsonl(self) -> Iterator[str]:
        """The stream as JSON lines (no ``sentAt``: the sender stamps it)."""
        for event in self.events:
            yield json.dumps(event.body, ensure_ascii=False, separators=(",", ":")) + "\n"


def generate(config: SimulationConfig) -> Simulation:
    catalog = build_catalog()
    campaigns = plan_campaigns(config, catalog)
    events: list[SimEvent] = simulate_malformed(config)
    crawls = []
    for index in range(config.bots):
        crawl_events, crawl = simulate_crawl(index, config, catalog)
        events.extend(crawl_events)
        crawls.append(crawl)
    people: list[Person] = []
    facts = Facts()
    for index in range(config.customers):
        if config.max_events is not None and len(events) >= config.max_events:
            break
        person = make_person(random.Random(f"{config.run_key}:who:{index}"), index, config.mix, catalog)
        person_events, person_facts = simulate_person(person, config, catalog, campaigns)
        people.append(person)
        facts.extend(person_facts)
        events.extend(person_events)
    events.sort(key=lambda e: e.sort_key)
    truth = derive_truth(config, people, facts, campaigns, crawls, events)
    return Simulation(config, tuple(events), truth)
