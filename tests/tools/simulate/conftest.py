"""Small simulations shared by the simulator's tests (generation is pure and fast)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tools.simulate import Simulation, SimulationConfig, generate

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def small_config(seed: int = 7, customers: int = 300, **overrides: object) -> SimulationConfig:
    return SimulationConfig(seed=seed, now=NOW, customers=customers, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def small_sim() -> Simulation:
    return generate(small_config())
