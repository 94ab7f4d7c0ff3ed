"""The fault schedule: seeded (a failure can be replayed), inside the window, every target reachable."""

from __future__ import annotations

from tools.chaos.plan import BROKER, SERVICES, plan_faults, service_names


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


def test_a_cluster_plan_names_the_node_and_a_single_broker_plan_is_unchanged() -> None:
    single = plan_faults(3, 100, 30.0)
    assert all(f.node is None and "node" not in f.to_json() for f in single)
    cluster = plan_faults(3, 100, 30.0, nodes=3)
    assert {f.node for f in cluster if f.target == BROKER} == {1, 2, 3}
    assert all(f.node is None for f in cluster if f.target != BROKER)


def test_service_names_keep_the_demos_names_for_one_of_each() -> None:
    assert service_names() == ("collector", "worker", "sink")
    assert service_names(3, 2, separate_triggers=True) == (
        "collector", "worker-1", "worker-2", "worker-3", "triggers", "sink-1", "sink-2",
    )  # fmt: skip
