"""Throughput of the trigger stage without Kafka: route + evaluate (JSON state per customer).

    .venv/bin/python bench/triggers_engine.py [events] [customers] [quiet hours]

Feeds enriched-event-shaped records (views, adds to cart, orders, consent) for a set of
customers through ``TriggerCore.route`` and ``TriggerCore.evaluate`` in batches of 500,
with the starter rule pack, and prints events per second for each step (wall clock, and per
CPU-second of this process, which shared machines disturb less); then sweeps the states through
quiet hours (30 days by default), as the marks do when no input comes.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pipeline.serde import SingleObjectSerde
from pipeline.settings import KafkaSettings, Settings
from triggers.core import Incoming, Marks, Output, TriggerCore
from triggers.metrics import TriggerMetrics
from triggers.ruleset import load_rules

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NAMES = ["Product Viewed"] * 6 + ["Product Added"] * 2 + ["Order Completed", "Consent Granted"]


def events(n: int, customers: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = rng.randrange(customers)
        name = rng.choice(NAMES)
        when = T0 + timedelta(seconds=i * 2)
        product = {
            "product_id": f"p-{rng.randrange(50)}",
            "category": rng.choice(["books", "music", "garden"]),
        }
        out.append({
            "message_id": f"m-{i}", "type": "track", "event": name, "channel": "web",
            "anonymous_id": f"dev-{c}", "user_id": f"c-{c}", "timestamp": when, "received_at": when,
            "context": {}, "properties": {},
            "commerce": {"products": [product], "revenue": 20.0 if name == "Order Completed" else None},
            "consent": {"purposes": ["marketing_email"]} if name == "Consent Granted" else None,
            "enrichment": {"event_time": when, "customer_id": f"c-{c}"},
        })  # fmt: skip
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    customers = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    hours = int(sys.argv[3]) if len(sys.argv) > 3 else 24 * 30
    settings = Settings(kafka=KafkaSettings(topic_prefix="bench"))
    core = TriggerCore(settings, load_rules(settings.triggers.rules_dir), TriggerMetrics())
    serde = SingleObjectSerde("customer_event")
    encoded = [serde.encode(e) for e in events(n, customers)]
    routed, route_s, route_cpu = timed(lambda: route(core, encoded))
    (table, last, alerts), evaluate_s, evaluate_cpu = timed(lambda: evaluate(core, routed))
    size = sum(len(v) for v in table.values()) / max(1, len(table))
    (swept, more), sweep_s, sweep_cpu = timed(lambda: sweep(core, table, last, hours))
    alerts += more
    print(f"{n} events, {customers} customers, {alerts} alerts")
    print(f"route:    {n / route_s:,.0f} events/s wall, {n / route_cpu:,.0f} per CPU-s (Avro in, view, JSON)")
    rate, rate_cpu = len(routed) / evaluate_s, len(routed) / evaluate_cpu
    print(
        f"evaluate: {rate:,.0f} inputs/s wall, {rate_cpu:,.0f} per CPU-s (state, rules, guardrails, Avro out)"
    )
    print(f"mean state size: {size:,.0f} bytes")
    print(
        f"sweep:    {hours} quiet hours x {len(table)} states: {swept / sweep_s:,.0f} state-hours/s wall, "
        f"{swept / sweep_cpu:,.0f} per CPU-s ({sweep_cpu / max(1, swept) * 1e6:.1f} us CPU each); "
        f"{alerts} alerts in all"
    )


T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """What ``work`` returns, with the wall and CPU seconds it took."""
    started, cpu = time.perf_counter(), time.process_time()
    done = work()
    return done, time.perf_counter() - started, time.process_time() - cpu


def route(core: TriggerCore, encoded: list[bytes]) -> list[Output]:
    """The route step over the enriched events, 500 at a time: the triggers topic's inputs."""
    topic = core.topics.enriched_events
    routed: list[Output] = []
    for i in range(0, len(encoded), 500):
        batch = [Incoming(topic, 0, i + j, None, v) for j, v in enumerate(encoded[i : i + 500])]
        routed.extend(core.route(batch, T0).outputs)
    return routed


def evaluate(core: TriggerCore, routed: list[Output]) -> tuple[dict[bytes, bytes], int, int]:
    """The evaluate step over the inputs, 500 at a time, each batch released at once: the states
    stored, the time of the last input, the alerts."""
    table: dict[bytes, bytes] = {}
    inputs = [Incoming(o.topic, 0, k, o.key, o.value or b"") for k, o in enumerate(routed)]
    alerts, last = 0, 0
    for i in range(0, len(inputs), 500):
        taken = core.evaluate(inputs[i : i + 500], T0)  # held until the clock passes them
        last = max((held.at for _, held in taken.held), default=0)
        mark = last + 1  # the clock just past the batch
        result = core.release({0: Marks(mark, mark, mark)}, table.get, T0)
        alerts += len(result.alerts)
        for key, (_, value) in result.states.items():
            if value is not None:
                table[key] = value
    return table, last, alerts


def sweep(core: TriggerCore, table: dict[bytes, bytes], last: int, hours: int) -> tuple[int, int]:
    """A quiet month after the inputs: the marks cross an hour at a time; the sweep visits the
    states whose hour can change something (a day passed for churn risk, ids to prune). Returns
    the state-hours passed and the alerts."""
    swept = alerts = 0
    for hour in range(1, hours + 1):
        mark = last + hour * 3_600_000
        swept += len(table)
        while True:  # a full pass (the first) takes as many steps as ``triggers.sweep_chunk`` makes
            result = core.sweep(table, {0: Marks(mark, mark, mark)})
            alerts += len(result.alerts)
            for key, (_, value) in result.states.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
            if not core.pass_pending:
                break
    return swept, alerts


if __name__ == "__main__":
    main()
