"""Evaluating rule conditions over a data context: pure, and every verdict explained.

The context is a plain dict of namespaces (``event``, ``session``, ``profile``,
``previous``, ``customer_id``, ``recommendations``). ``evaluate`` returns whether
all conditions hold and, when they do, each condition with the value it saw: that
list becomes the alert's ``reasons``, so marketing can see why an alert fired.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.immutable import immutable
from triggers.ruleset import (
    TEMPLATE_FIELD,
    AnyCondition,
    Comparison,
    Condition,
    PastEventsCondition,
)

_MISSING = object()


@immutable
class Reason:
    condition: str
    actual: Any

    def to_record(self) -> dict[str, str]:
        return {"condition": self.condition, "actual": json.dumps(self.actual, default=str, sort_keys=True)}


def resolve(context: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any step is missing. A step may be any mapping
    (the profile's fields are a lazy one, ``triggers.profile.ProfileFields``)."""
    value: Any = context
    for part in path.split("."):
        if (type(value) is dict or isinstance(value, Mapping)) and part in value:
            value = value[part]
        else:
            return None
    return value


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(actual: Any, expected: Any) -> bool:
        if actual is None or expected is None:
            return False
        try:
            return op(actual, expected)
        except TypeError:
            return False

    return check


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, (list, tuple, set, dict, str)):
        if isinstance(expected, list):
            return any(e in actual for e in expected)
        return expected in actual
    return False


def _empty(actual: Any) -> bool:
    return actual is None or (hasattr(actual, "__len__") and len(actual) == 0)


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, e: a == e,
    "ne": lambda a, e: a != e,
    "gt": _ordered(lambda a, e: a > e),
    "gte": _ordered(lambda a, e: a >= e),
    "lt": _ordered(lambda a, e: a < e),
    "lte": _ordered(lambda a, e: a <= e),
    "in": lambda a, e: isinstance(e, (list, tuple)) and a in e,
    "not_in": lambda a, e: isinstance(e, (list, tuple)) and a not in e,
    "contains": _contains,
    "not_contains": lambda a, e: not _contains(a, e),
    "exists": lambda a, e: a is not None,
    "not_exists": lambda a, e: a is None,
    "empty": lambda a, e: _empty(a),
    "not_empty": lambda a, e: not _empty(a),
}

# Counts past events for a past_events condition: (condition) -> count.
PastCounter = Callable[[PastEventsCondition], int]


def _check(cond: Condition, context: dict[str, Any], count_past: PastCounter) -> tuple[bool, list[Reason]]:
    if isinstance(cond, Comparison):
        actual = resolve(context, cond.field)
        expected = resolve(context, cond.ref) if cond.ref else cond.value
        if not OPERATORS[cond.op](actual, expected):
            return False, []  # a condition that did not hold gives no reason: none is kept
        seen: Any = actual if not cond.ref else {cond.field: actual, cond.ref: expected}
        return True, [Reason(cond.describe(), seen)]
    if isinstance(cond, PastEventsCondition):
        past = cond.past_events
        count = count_past(cond)
        held = (past.min is None or count >= past.min) and (past.max is None or count <= past.max)
        return held, [Reason(cond.describe(), count)] if held else []
    assert isinstance(cond, AnyCondition)
    for option in cond.any:
        held, reasons = _check(option, context, count_past)
        if held:
            return True, reasons
    return False, []


def evaluate(
    conditions: Sequence[Condition], context: dict[str, Any], count_past: PastCounter
) -> tuple[bool, list[Reason]]:
    """All conditions hold? Stops at the first that does not; reasons only when all hold."""
    reasons: list[Reason] = []
    for cond in conditions:
        held, why = _check(cond, context, count_past)
        if not held:
            return False, []
        reasons.extend(why)
    return True, reasons


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def render(template: str, context: dict[str, Any]) -> str:
    """Fill ``{dotted.path}`` placeholders from the context; lists become 'a, b'."""
    return TEMPLATE_FIELD.sub(lambda m: _text(resolve(context, m.group(1))), template)
