"""When a scheduled rule can next decide for a customer, read from its conditions.

Between two inputs only the passing days move a scheduled rule's view (``DAY_COUNTERS``), so
``Engine.next_hour`` had the stage look at a state every day while a rule of its was undecided.
Most of those looks cannot decide anything: ``churn_risk`` (``profile.orders >= 1`` and
``days_since_last_seen >= 60``) was looked at every event-time day for every device that never
ordered, until the state expired 400 days later. In a replay, where event time runs far ahead of
the clock, that was most of the evaluate stage's time (issue 11: 61% of its samples in a
10M-event run). So a rule's conditions are split once (``Wake.of``):

- *steady* ones read nothing that moves with time: false now, they stay false until an input;
- *thresholds*: a day counter ``gte`` / ``gt`` a number, true from a known time on;
- anything else that moves with time (another operator on a day counter, a comparison of two
  fields, past events counted in a window, an ``any`` holding one of these) keeps the daily look.

The hours skipped are exactly those at which the rule's conditions do not hold, so the alerts are
the ones a look at every hour gives (tests/triggers/test_skipped_hours.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pipeline.immutable import immutable
from triggers.conditions import evaluate
from triggers.profile import DAY_COUNTERS, DAY_MS, Profile
from triggers.ruleset import AnyCondition, Comparison, Condition, PastEventsCondition, Rule


@immutable
class Wake:
    """A scheduled rule's conditions, split by how they move with event time (module docstring)."""

    steady: tuple[Condition, ...]
    thresholds: tuple[tuple[str, int], ...]  # (stored time behind a day counter, whole days it must reach)
    daily: bool  # another condition moves with time: look as each day counter moves on

    @classmethod
    def of(cls, rule: Rule) -> Wake:
        steady: list[Condition] = []
        thresholds: list[tuple[str, int]] = []
        daily = False
        for cond in rule.conditions:
            if not _moves_with_time(cond):
                steady.append(cond)
            elif (threshold := _threshold(cond)) is not None:
                thresholds.append(threshold)
            else:
                daily = True
        return cls(tuple(steady), tuple(thresholds), daily)

    def earliest(self, profile: Profile, context: Callable[[], dict[str, Any]]) -> int | None:
        """The first event time at which every condition but the daily ones can hold; None: not
        before the next input (a steady condition is false, or a counter has nothing to count).
        ``context`` builds the rules' view, only when a steady condition needs it."""
        if self.steady and not evaluate(self.steady, context(), _no_past_events)[0]:
            return None
        times = []
        for stored, days in self.thresholds:
            since = getattr(profile, stored)
            if since is None:
                return None  # the counter reads None, which no threshold passes
            times.append(since + days * DAY_MS)
        return max(times, default=None)


def _moves_with_time(cond: Condition) -> bool:
    """Whether the condition may change its verdict while no input comes (conservative)."""
    if isinstance(cond, PastEventsCondition):
        return True  # events leave the window as time passes (refused in scheduled rules today)
    if isinstance(cond, AnyCondition):
        return any(_moves_with_time(option) for option in cond.any)
    assert isinstance(cond, Comparison)
    for path in (cond.field, cond.ref):
        if path is not None and ("." not in path or path.rpartition(".")[2] in DAY_COUNTERS):
            return True  # a day counter, or a whole namespace that holds them
    return False


def _threshold(cond: Condition) -> tuple[str, int] | None:
    """(stored time, whole days) for ``profile.<day counter> gte|gt <number>`` (scheduled rules
    read no other namespace that holds day counters: ``triggers.ruleset``)."""
    if not isinstance(cond, Comparison) or cond.ref is not None or cond.op not in ("gte", "gt"):
        return None
    head, _, name = cond.field.partition(".")
    value = cond.value
    if head != "profile" or name not in DAY_COUNTERS:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    days = math.ceil(value) if cond.op == "gte" else math.floor(value) + 1  # counters are whole days
    return DAY_COUNTERS[name], days


def _no_past_events(cond: PastEventsCondition) -> int:
    raise AssertionError("a steady condition counts no past events")  # _moves_with_time keeps them out
