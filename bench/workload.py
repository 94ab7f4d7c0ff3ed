"""The benchmarks' raw events: the simulator's journeys with a realistic spread of user agents.

``tools.simulate`` gives believable visits (browse, cart, checkout, sign-in, app screens,
e-mail events, crawlers) over thousands of devices and about a thousand pages, but draws its
user agents from a dozen strings, which flatters any per-agent cache. Here each simulated
device gets a variant of its agent instead: the same browser and OS family with another
version, build or phone model, drawn with a long-tailed popularity, so a run of 100k events
holds thousands of distinct agents as real traffic does. Events are mapped to customer_event
records by the collector's own ``map_event`` and encoded by the project's serde, so the bytes
on the raw topic are what the collector would have written.

Encoded runs are cached under ``.webhouse/bench/`` (keyed by schema, size and seed): generating
100k events takes about half a minute, reading them back a second.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.collector.segment import map_event
from pipeline.serde import SingleObjectSerde
from pipeline.settings import REPO_ROOT
from tools.simulate import SimulationConfig, generate

CACHE_DIR = REPO_ROOT / ".webhouse" / "bench"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
FORMAT = 4  # bump when the generated events or the cache layout change, so stale caches are not reused

# Phone models for Android agents (real model codes, as Chrome and Samsung Internet send them).
ANDROID_MODELS = (
    "Pixel 6", "Pixel 6a", "Pixel 7", "Pixel 7 Pro", "Pixel 7a", "Pixel 8", "Pixel 8 Pro", "Pixel 8a",
    "Pixel 9", "SM-S911B", "SM-S916B", "SM-S918B", "SM-S921B", "SM-S926B", "SM-S928B", "SM-A546B",
    "SM-A556B", "SM-A346B", "SM-A256B", "SM-A156B", "SM-G991B", "SM-G996B", "SM-G998B", "SM-A536B",
    "SM-A525F", "SM-X710", "SM-X810", "SM-T870", "2201116SG", "2211133G", "23049PCD8G", "23078PND5G",
    "M2101K6G", "CPH2449", "CPH2581", "CPH2487", "NE2213", "LE2123", "XQ-DQ72", "XQ-CT54",
    "moto g84 5G", "moto g54 5G", "motorola edge 40", "Nokia G42 5G", "RMX3771", "V2250", "ASUS_AI2302",
)  # fmt: skip
# Version tokens we vary, with how far back a device may lag behind the simulator's current string.
_TOKEN = re.compile(r"(Chrome/|Edg/|Firefox/|rv:|Version/|SamsungBrowser/|ExampleShop/|iPhone OS |CPU OS |"
                    r"Android |iOS )(\d+)((?:[._]\d+)*)")  # fmt: skip
_LAG = {"Chrome/": 14, "Edg/": 12, "Firefox/": 16, "rv:": 16, "Version/": 3, "SamsungBrowser/": 5,
        "ExampleShop/": 0, "iPhone OS ": 3, "CPU OS ": 3, "Android ": 4, "iOS ": 3}  # fmt: skip
_ANDROID_MODEL = re.compile(r"(Android [\d.]+; (?:U; )?)([^;)]+?)((?: Build/[^;)]+)?\))")
SHARED = 0.4  # share of devices whose agent is one of the popular strings rather than a rarer one


@dataclass(frozen=True, slots=True)
class Workload:
    """Encoded raw events (key, value) in event-time order, and what they hold."""

    messages: list[tuple[bytes, bytes]]
    devices: int
    user_agents: int
    pages: int

    @property
    def mean_bytes(self) -> float:
        return sum(len(v) for _, v in self.messages) / max(1, len(self.messages))


def _version(match: re.Match[str], rng: random.Random) -> str:
    """Another plausible version of one token: an older major, other minor and build numbers."""
    name, major, rest = match.group(1), int(match.group(2)), match.group(3)
    lag = _LAG[name]
    major = max(1, major - min(lag, int(rng.expovariate(0.3)))) if lag else major
    if not rest:
        return f"{name}{major}"
    sep = rest[0]
    parts = rest[1:].split(sep)
    if len(parts) == 3 and name in ("Chrome/", "Edg/"):  # 131.0.6778.39: build and patch vary
        return f"{name}{major}.0.{3900 + major * 21 + rng.randrange(60)}.{rng.randrange(1, 250)}"
    minor = [str(rng.randrange(0, 8)) for _ in parts]
    return name + sep.join([str(major), *minor])


def agent_variant(agent: str, rng: random.Random) -> str:
    """The same client family at another version (and, for Android, another phone model)."""
    varied = _TOKEN.sub(lambda m: _version(m, rng), agent)
    return _ANDROID_MODEL.sub(lambda m: m.group(1) + rng.choice(ANDROID_MODELS) + m.group(3), varied)


class AgentPool:
    """Per original agent: a few popular variants most devices share, and a long tail of rare ones."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.variants: dict[str, list[str]] = {}

    def pick(self, agent: str, rng: random.Random) -> str:
        pool = self.variants.setdefault(agent, [agent])
        if rng.random() < SHARED:
            rank = min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)  # Zipf-like over what exists
            return pool[rank]
        pool.append(agent_variant(agent, random.Random(f"{self.seed}:{agent}:{len(pool)}")))
        return pool[-1]


def _stamp(body: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], datetime]:
    """Client send time and collector receive time a little after the event, as on the wire."""
    ts = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    sent = ts + timedelta(milliseconds=rng.randint(30, 900))
    received = sent + timedelta(milliseconds=rng.randint(5, 250))
    return {**body, "sentAt": sent.isoformat(timespec="milliseconds")}, received


def _records(events: int, seed: int) -> Iterator[dict[str, Any]]:
    config = SimulationConfig(
        seed=seed, now=NOW, days=30.0, customers=max(50, events), max_events=events, malformed=0,
        bots=max(2, events // 5000),
    )  # fmt: skip
    sim = generate(config)
    rng = random.Random(f"{seed}:wire")
    agents = AgentPool(seed)
    agent_of: dict[str, str] = {}
    for event in sim.events[:events]:
        body, received = _stamp(event.body, rng)
        record = map_event(body, received_at=received, source="bench")
        context = record["context"]
        if context and context.get("user_agent"):
            device = record["anonymous_id"] or record["user_id"] or ""
            if device not in agent_of:
                agent_of[device] = agents.pick(context["user_agent"], rng)
            context["user_agent"] = agent_of[device]
        yield record


def build(events: int, seed: int = 11) -> Workload:
    serde = SingleObjectSerde("customer_event")
    messages: list[tuple[bytes, bytes]] = []
    devices: set[str] = set()
    user_agents: set[str] = set()
    pages: set[str] = set()
    for record in _records(events, seed):
        key = record["anonymous_id"] or record["user_id"]
        context = record["context"] or {}
        devices.add(key)
        if context.get("user_agent"):
            user_agents.add(context["user_agent"])
        if (context.get("page") or {}).get("url"):
            pages.add(context["page"]["url"].split("?")[0])
        messages.append((key.encode(), serde.encode(record)))
    return Workload(messages, len(devices), len(user_agents), len(pages))


def load(events: int, seed: int = 11, cache_dir: Path = CACHE_DIR) -> Workload:
    """``build``, cached on disk: every contender of every run reads the very same bytes. The key
    holds the schema's fingerprint: events written with an older schema are read, but not spliced
    by the worker's codec, and would time its slow path."""
    schema = SingleObjectSerde("customer_event").schema.fingerprint.hex()
    path = cache_dir / f"events-v{FORMAT}-{schema}-{events}-{seed}.pickle"
    if path.exists():
        with path.open("rb") as f:
            return Workload(**pickle.load(f))
    workload = build(events, seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as f:
        # Plain values: the class pickles under whichever name imported it (``workload`` for a
        # script in bench/, ``bench.workload`` for a module), and the other could not read it.
        plain = {f.name: getattr(workload, f.name) for f in fields(Workload)}
        pickle.dump(plain, f, protocol=pickle.HIGHEST_PROTOCOL)
    partial.rename(path)
    return workload


def user_agents(workload: Workload) -> list[str]:
    """The agent of every event that has one, in order (for the user-agent parse bench)."""
    serde = SingleObjectSerde("customer_event")
    agents = []
    for _, value in workload.messages:
        agent = (serde.decode(value)["context"] or {}).get("user_agent")
        if agent:
            agents.append(agent)
    return agents


# What a replay renames, so that a later cycle's events are new events of new devices and orders
# (the worker would drop a repeated event id as a duplicate). Customers keep their ids: a long run
# is the same shop's customers coming back on new devices and cookies.
_REPLAY_IDS = ("message_id", "anonymous_id")
_REPLAY_SUB_IDS = {"context": ("device",), "commerce": ("order_id", "cart_id", "checkout_id")}


def span(messages: list[tuple[bytes, bytes]]) -> timedelta:
    """Whole days from the first event to the last, plus one: how far a replay cycle moves on."""
    serde = SingleObjectSerde("customer_event")
    times = [serde.decode(value)["timestamp"] for _, value in (messages[0], messages[-1])]
    return timedelta(days=(max(times) - min(times)).days + 1)


def replay(messages: list[tuple[bytes, bytes]], cycles: int, first: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """Cycles ``first`` to ``cycles - 1`` of the events: cycle 0 as generated, each later one
    ``span`` later in event time with its devices, events and orders renamed (``_renamed``). A
    run of N x cycles events without holding them all (a 10M-event run from a 1M-event workload)."""
    if first == 0:
        yield from messages
    serde = SingleObjectSerde("customer_event")
    shift = span(messages)
    for cycle in range(max(first, 1), cycles):
        for _, value in messages:
            record = _renamed(serde.decode(value), cycle, shift * cycle)
            yield (record["anonymous_id"] or record["user_id"]).encode(), serde.encode(record)


def _renamed(record: dict[str, Any], cycle: int, later: timedelta) -> dict[str, Any]:
    def rename(value: Any) -> Any:
        return f"{value}~{cycle}" if isinstance(value, str) and value else value

    for name in _REPLAY_IDS:
        record[name] = rename(record[name])
    for sub, names in _REPLAY_SUB_IDS.items():
        inner = record.get(sub)
        if not inner:
            continue
        for name in names:
            if name == "device" and inner.get("device"):
                inner["device"]["id"] = rename(inner["device"].get("id"))
            elif name in inner:
                inner[name] = rename(inner[name])
    properties = record.get("properties") or {}
    if isinstance(properties.get("order_id"), str):  # property values are JSON texts
        properties["order_id"] = json.dumps(rename(json.loads(properties["order_id"])))
    return _shifted(record, later)


def _shifted(value: Any, later: timedelta) -> Any:
    """Every timestamp in a record moved ``later``."""
    if isinstance(value, datetime):
        return value + later
    if isinstance(value, dict):
        return {k: _shifted(v, later) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, later) for v in value]
    return value
