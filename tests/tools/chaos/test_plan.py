"""The fault schedule: seeded (a failure can be replayed), inside the window, every target reachable."""

from __future__ import annotations

from tools.chaos.plan import BROKER, SERVICES, plan_faults


def test_same_seed_same_schedule_and_another_seed_another() -> None:
    assert plan_faults(7, 20, 60.0) == plan_faults(7, 20, 60.0)
    assert plan_faults(7, 20, 60.0) != plan_faults(8, 20, 60.0)


def test_faults_are_ordered_inside_the_window_and_reach_every_target() -> None:
    faults = plan_faults(1, 200, 30.0)
    assert len(faults) == 200
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    assert all(1.0 <= f.at_s <= 30.0 for f in faults)
    assert {f.label for f in faults} == {*SERVICES, f"{BROKER}_pause", f"{BROKER}_kill"}
    assert all(f.action == "kill" for f in faults if f.target != BROKER)
    assert all(1.0 <= f.hold_s <= 8.0 for f in faults if f.action == "pause")
