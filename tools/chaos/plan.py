"""The fault schedule of a chaos run: which process, what is done to it, when (seeded, pure)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

SERVICES = ("collector", "worker", "triggers", "sink")
BROKER = "broker"


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after the traffic starts
    target: str  # a service name, or "broker"
    action: str  # "kill" (SIGKILL, restarted after hold_s) or "pause" (SIGSTOP for hold_s, SIGCONT)
    hold_s: float
    node: int | None = None  # which node of a cluster, for a broker fault; None: the only broker

    @property
    def label(self) -> str:
        """How the report counts it: ``worker``, ``broker_pause``, ``broker_kill``..."""
        return self.target if self.target != BROKER else f"{BROKER}_{self.action}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.node is None:
            del data["node"]
        return data


def service_names(workers: int = 1, sinks: int = 1, separate_triggers: bool = False) -> tuple[str, ...]:
    """The stack's services, as the supervisor names them: ``worker``/``sink`` when there is one of
    each (the demo's names), ``worker-1``, ``worker-2``... when there are several."""

    def several(name: str, count: int) -> tuple[str, ...]:
        return (name,) if count == 1 else tuple(f"{name}-{i}" for i in range(1, count + 1))

    return (
        "collector",
        *several("worker", workers),
        *(("triggers",) if separate_triggers else ()),
        *several("sink", sinks),
    )


def plan_faults(
    seed: int,
    kills: int,
    window_s: float,
    targets: tuple[str, ...] = (*SERVICES, BROKER),
    max_pause_s: float = 8.0,
    nodes: int = 1,
) -> list[Fault]:
    """``kills`` faults at uniform moments of ``[1, window_s]`` on targets drawn uniformly; the
    broker is paused or killed (even odds), on a cluster of ``nodes`` one node drawn uniformly.
    Services come back after 0.5-3 s, as a supervisor would restart them; a killed broker after
    1-4 s. (With one node the draws are those of the single-broker schedule: same seed, same plan.)"""
    rng = random.Random(seed)
    faults = []
    for _ in range(kills):
        at = rng.uniform(1.0, max(1.0, window_s))
        target = rng.choice(targets)
        if target == BROKER:
            action = "pause" if rng.random() < 0.5 else "kill"
            hold = rng.uniform(1.0, max_pause_s) if action == "pause" else rng.uniform(1.0, 4.0)
            node = rng.randint(1, nodes) if nodes > 1 else None
            faults.append(Fault(at, target, action, hold, node))
        else:
            faults.append(Fault(at, target, "kill", rng.uniform(0.5, 3.0)))
    return sorted(faults, key=lambda f: f.at_s)
