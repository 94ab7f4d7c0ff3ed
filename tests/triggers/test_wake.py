"""How a scheduled rule's conditions decide when the stage looks at a state again (triggers.wake)."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggers.profile import DAY_MS, Profile
from triggers.ruleset import load_file
from triggers.wake import Wake

RULE = """\
id: sample
kind: marketing
consent: marketing_email
trigger:
  source: schedule
conditions:
{conditions}
alert:
  type: sample
  channel: email
  message: "{{customer_id}}"
"""


def wake(tmp_path: Path, *conditions: str) -> Wake:
    path = tmp_path / "rule.yaml"
    path.write_text(RULE.format(conditions="\n".join(f"  - {c}" for c in conditions)))
    [(rule, _)] = load_file(path)
    return Wake.of(rule)


@pytest.mark.parametrize(
    ("condition", "threshold"),
    [
        ("{field: profile.days_since_last_seen, op: gte, value: 60}", ("last_seen", 60)),
        ("{field: profile.days_since_last_seen, op: gt, value: 60}", ("last_seen", 61)),
        ("{field: profile.days_since_last_order, op: gte, value: 2.5}", ("last_order_at", 3)),
        ("{field: profile.days_since_email_engagement, op: gt, value: 2.5}", ("last_email_engagement", 3)),
    ],
)
def test_a_day_counter_at_least_a_number_is_a_threshold(
    tmp_path: Path, condition: str, threshold: tuple[str, int]
) -> None:
    assert wake(tmp_path, condition) == Wake((), (threshold,), daily=False)


@pytest.mark.parametrize(
    "condition",
    [
        "{field: profile.days_since_last_seen, op: lte, value: 3}",  # true now, false later
        "{field: profile.days_since_last_seen, op: eq, value: 3}",
        "{field: profile.days_since_last_seen, op: gte, value: .nan}",
        "{field: profile.days_since_last_seen, op: gte, value: true}",
        "{field: profile.days_since_last_order, op: gte, ref: profile.days_since_last_seen}",
        "{any: [{field: profile.orders, op: gte, value: 2}, "
        "{field: profile.days_since_last_seen, op: gte, value: 9}]}",
    ],
)
def test_what_else_moves_with_time_is_looked_at_daily(tmp_path: Path, condition: str) -> None:
    assert wake(tmp_path, condition).daily


def test_what_does_not_move_with_time_is_steady(tmp_path: Path) -> None:
    steady = "{field: profile.orders, op: gte, value: 1}"
    either = (
        "{any: [{field: profile.orders, op: gte, value: 2}, {field: profile.value_tier, op: eq, value: vip}]}"
    )
    found = wake(tmp_path, steady, either, "{field: profile.days_since_last_seen, op: gte, value: 60}")
    assert (len(found.steady), found.thresholds, found.daily) == (2, (("last_seen", 60),), False)


def test_the_earliest_time_is_when_every_threshold_is_passed() -> None:
    found = Wake((), (("last_seen", 60), ("last_order_at", 10)), daily=False)
    profile = Profile("c-1", last_seen=5 * DAY_MS, last_order_at=100 * DAY_MS)
    assert found.earliest(profile, dict) == 110 * DAY_MS
    assert found.earliest(Profile("c-1", last_seen=5 * DAY_MS), dict) is None  # never ordered: never


def test_a_steady_condition_that_fails_means_not_before_an_input(tmp_path: Path) -> None:
    found = wake(tmp_path, "{field: profile.orders, op: gte, value: 1}")
    assert found.earliest(Profile("c-1"), lambda: {"profile": {"orders": 0}}) is None
    assert found.earliest(Profile("c-1"), lambda: {"profile": {"orders": 1}}) is None  # holds, no threshold
    timed = Wake(found.steady, (("last_seen", 60),), daily=False)
    assert timed.earliest(Profile("c-1", last_seen=0), lambda: {"profile": {"orders": 0}}) is None
    assert timed.earliest(Profile("c-1", last_seen=0), lambda: {"profile": {"orders": 1}}) == 60 * DAY_MS
