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

    @property
    def label(self) -> str:
        """How the report counts it: ``worker``, ``broker_pause``, ``broker_kill``..."""
        return self.target if self.target != BROKER else f"{BROKER}_{self.action}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_faults(
    seed: int,
    kills: int,
    window_s: float,
    targets: tuple[str, ...] = (*SERVICES, BROKER),
    max_pause_s: float = 8.0,
) -> list[Fault]:
    """``kills`` faults at uniform moments of ``[1, window_s]`` on targets drawn uniformly; the
    broker is paused or killed (even odds). Services come back after 0.5-3 s, as a supervisor
    would restart them; a killed broker after 1-4 s."""
    rng = random.Random(seed)
    faults = []
    for _ in range(kills):
        at = rng.uniform(1.0, max(1.0, window_s))
        target = rng.choice(targets)
        if target == BROKER and rng.random() < 0.5:
            faults.append(Fault(at, target, "pause", rng.uniform(1.0, max_pause_s)))
        elif target == BROKER:
            faults.append(Fault(at, target, "kill", rng.uniform(1.0, 4.0)))
        else:
            faults.append(Fault(at, target, "kill", rng.uniform(0.5, 3.0)))
    return sorted(faults, key=lambda f: f.at_s)
