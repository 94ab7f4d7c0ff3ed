"""Rules as data: the YAML schema of a trigger rule, validated, with file:line errors.

A rule file under ``triggers/rules/`` holds one rule per YAML document (``---``
separates several). Every key, with an example (see the starter pack for more)::

    id: cart_abandonment              # unique slug: [a-z0-9_]+
    description: Items left in the cart, no order within an hour of the visit's end.
    enabled: true                     # default true
    kind: marketing                   # marketing (needs `consent`, counts toward the
                                      # daily cap) or service
    consent: marketing_email          # consent purpose the rule needs
    trigger:
      source: session                 # event | session | profile | schedule
      events: [Product Viewed]        # source=event only: event names ('*' = any; page,
                                      # screen, identify... match untracked call types)
    conditions:                       # all must hold; each is one of:
      - {field: session.converted, op: eq, value: false}
      - {field: profile.tier_rank, op: gt, ref: previous.tier_rank}   # compare two fields
      - past_events: {event: Product Viewed, within: 7d, same: product_id, min: 3}
      - any: [ {field: ..., op: ...}, ... ]                            # one of several
    absence:                          # optional: fire only if no such event follows
      event: Order Completed          # (event time, from the trigger's time) within
      within: 1h
    alert:
      type: cart_abandoned
      priority: high                  # low | normal | high
      channel: email                  # suggested channel
      message: "Left {session.products_added} in the cart"   # {path} filled from the data
    cooldown: 24h                     # per customer; durations: 90s, 30m, 1h, 7d, 2w

Fields are dotted paths in namespaces: ``event.*`` (pipeline/event_view.py EventView),
``session.*`` (SessionView), ``profile.*`` and ``previous.*`` (the profile after and
before the change; profile.py ``profile_fields``), ``customer_id``, and
``recommendations`` (cross-sell categories from settings for the event's categories).
Operators: eq ne gt gte lt lte in not_in contains not_contains exists not_exists
empty not_empty. ``past_events`` counts this customer's events named ``event`` in the
last ``within`` of event time (the current event included), optionally only those
sharing the current event's ``same`` value, and holds when the count is within
[min, max] (Apache Unomi's pastEventCondition).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from pipeline.errors import RuleError
from pipeline.event_view import EventView
from pipeline.immutable import immutable
from triggers.events import SessionView
from triggers.profile import Profile

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
TEMPLATE_FIELD = re.compile(r"\{([a-zA-Z_][\w.]*)\}")


def parse_duration(value: Any) -> int:
    """'90s', '30m', '1h', '7d', '2w' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration, e.g. 30m, 1h, 7d")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return int(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration (e.g. 90s, 30m, 1h, 7d, 2w)")


Duration = Annotated[int, BeforeValidator(parse_duration)]
Op = Literal[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "exists",
    "not_exists",
    "empty",
    "not_empty",
]
UNARY_OPS = frozenset({"exists", "not_exists", "empty", "not_empty"})
Source = Literal["event", "session", "profile", "schedule"]

_PROFILE_EXTRA = {
    "days_since_last_seen",
    "days_since_last_order",
    "days_since_email_engagement",
    "tier_rank",
    "average_order_value",
    "categories",
}
KNOWN_FIELDS: dict[str, set[str]] = {
    "event": {f.name for f in dataclasses.fields(EventView)} | {"product_id", "category"},
    "session": {f.name for f in dataclasses.fields(SessionView)},
    "profile": {f.name for f in dataclasses.fields(Profile)} | _PROFILE_EXTRA,
    "previous": {f.name for f in dataclasses.fields(Profile)} | _PROFILE_EXTRA,
}
SCALARS = {"customer_id", "recommendations", "rule_id"}
NAMESPACES: dict[str, set[str]] = {
    "event": {"event", "profile", "previous"},
    "session": {"session", "profile", "previous"},
    "profile": {"profile", "previous"},
    "schedule": {"profile"},
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Model):
    field: str
    op: Op
    value: Any = None
    ref: str | None = Field(None, description="Compare with another field instead of a value.")

    @field_validator("field", "ref")
    @classmethod
    def _known_path(cls, path: str | None, info: ValidationInfo) -> str | None:
        source = (info.context or {}).get("source")
        if path is not None and source in NAMESPACES:
            _check_path(path, source)
        return path

    @model_validator(mode="after")
    def _operand(self) -> Comparison:
        if self.op in UNARY_OPS:
            if self.value is not None or self.ref is not None:
                raise ValueError(f"op {self.op} takes no value or ref")
        elif (self.value is None) == (self.ref is None):
            raise ValueError(f"op {self.op} needs exactly one of value or ref")
        if self.op in ("in", "not_in") and self.ref is None and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        return self

    def describe(self) -> str:
        if self.op in UNARY_OPS:
            return f"{self.field} {self.op}"
        return f"{self.field} {self.op} {self.ref if self.ref else self.value!r}"


class PastEvents(_Model):
    event: str
    within: Duration
    same: Literal["product_id", "category"] | None = None
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> PastEvents:
        if self.min is None and self.max is None:
            raise ValueError("past_events needs min and/or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("past_events min is greater than max")
        return self


class PastEventsCondition(_Model):
    past_events: PastEvents

    def describe(self) -> str:
        p = self.past_events
        same = f" same {p.same}" if p.same else ""
        bounds = " ".join(f"{k} {v}" for k, v in (("min", p.min), ("max", p.max)) if v is not None)
        return f"past_events {p.event!r} within {p.within}s{same} {bounds}"


class AnyCondition(_Model):
    any: list[Condition] = Field(min_length=1)

    def describe(self) -> str:
        return "any(" + "; ".join(c.describe() for c in self.any) + ")"


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "past_events" in value:
            return "past_events"
        if "any" in value:
            return "any"
    return "comparison"


Condition = Annotated[
    Annotated[Comparison, Tag("comparison")]
    | Annotated[PastEventsCondition, Tag("past_events")]
    | Annotated[AnyCondition, Tag("any")],
    Discriminator(_condition_kind),
]
AnyCondition.model_rebuild()


class Trigger(_Model):
    source: Source
    events: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _events(self) -> Trigger:
        if self.source == "event" and not self.events:
            raise ValueError("source event needs a list of events ('*' for any)")
        if self.source != "event" and self.events:
            raise ValueError(f"events are only for source event, not {self.source}")
        return self

    def matches(self, name: str) -> bool:
        return "*" in self.events or name in self.events


class Absence(_Model):
    event: str
    within: Duration


class AlertSpec(_Model):
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    priority: Literal["low", "normal", "high"] = "normal"
    channel: str
    message: str

    @field_validator("message")
    @classmethod
    def _known_paths(cls, message: str, info: ValidationInfo) -> str:
        source = (info.context or {}).get("source")
        if source in NAMESPACES:
            for path in TEMPLATE_FIELD.findall(message):
                _check_path(path, source)
        return message


class Rule(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    enabled: bool = True
    kind: Literal["marketing", "service"]
    consent: str | None = None
    trigger: Trigger
    conditions: list[Condition] = Field(default_factory=list)
    absence: Absence | None = None
    alert: AlertSpec
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.kind == "marketing" and not self.consent:
            raise ValueError("a marketing rule must name the consent purpose it needs")
        source = self.trigger.source
        if self.absence and source in ("profile", "schedule"):
            raise ValueError(f"absence windows start at an event or session, not at a {source} trigger")
        for cond in walk_conditions(self.conditions):
            if isinstance(cond, Comparison):
                continue
            if cond.past_events.same and source != "event":
                raise ValueError("past_events 'same' compares with the current event: source must be event")
            if source == "schedule":
                raise ValueError("past_events needs an event or session trigger")
        return self

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Rule:
        """Validate a rule; its trigger source is passed down so field paths are checked in place."""
        trigger = data.get("trigger")
        source = trigger.get("source") if isinstance(trigger, dict) else None
        return cls.model_validate(data, context={"source": source})

    @property
    def windows_s(self) -> int:
        """The longest stretch of past events the rule looks at."""
        spans = [
            c.past_events.within
            for c in walk_conditions(self.conditions)
            if isinstance(c, PastEventsCondition)
        ]
        if self.absence:
            spans.append(self.absence.within)
        return max(spans, default=0)


def walk_conditions(conditions: list[Any]) -> Iterator[Comparison | PastEventsCondition]:
    for cond in conditions:
        if isinstance(cond, AnyCondition):
            yield from walk_conditions(cond.any)
        else:
            yield cond


def _check_path(path: str, source: str) -> None:
    head, _, rest = path.partition(".")
    if head in SCALARS and not rest:
        return
    allowed = NAMESPACES[source]
    if head not in allowed:
        raise ValueError(
            f"{path!r}: rules triggered by {source} can use {', '.join(sorted(allowed | SCALARS))}"
        )
    name = rest.split(".", 1)[0]
    if name not in KNOWN_FIELDS[head]:
        raise ValueError(f"{path!r}: {head} has no field {name!r}")


@immutable
class RuleSet:
    """The loaded rules; immutable, so a reload swaps it whole and state stays put."""

    rules: tuple[Rule, ...]
    sources: dict[str, str]  # rule id -> "file:line"

    def enabled(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def only(self, rule_id: str) -> RuleSet:
        rule = self.get(rule_id)
        if rule is None:
            raise RuleError("<rules>", None, f"no rule {rule_id!r}; known: {', '.join(self.ids())}")
        return RuleSet((rule,), {rule_id: self.sources[rule_id]})

    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    @property
    def history_window_s(self) -> int:
        return max((r.windows_s for r in self.rules), default=0)


def _line_of(node: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest YAML node along a pydantic error location."""
    line = int(node.start_mark.line)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == part), None)
            if pair is None:
                if isinstance(part, str):
                    continue  # a union tag or a missing key: stay on the enclosing node
                break
            line, node = int(pair[0].start_mark.line), pair[1]  # the key's line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = int(node.start_mark.line)
        else:
            break
    return line + 1


def _documents(path: Path) -> Iterator[tuple[yaml.Node, Any]]:
    try:
        loader = yaml.SafeLoader(path.read_text())
    except OSError as exc:
        raise RuleError(str(path), None, f"cannot read: {exc}") from exc
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node, loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise RuleError(str(path), line, f"not valid YAML: {exc.problem}") from exc
    finally:
        loader.dispose()


def _readable(loc: tuple[int | str, ...]) -> str:
    """An error location without pydantic's union tags ('comparison', a repeated key)."""
    parts: list[str] = []
    for part in loc:
        text = str(part)
        if text == "comparison" or (parts and parts[-1] == text):
            continue
        parts.append(text)
    return ".".join(parts)


def load_file(path: Path) -> list[tuple[Rule, int]]:
    """Every rule in one file with its line; the first problem raises RuleError(path, line, what)."""
    rules = []
    for node, data in _documents(path):
        line = int(node.start_mark.line) + 1
        if not isinstance(data, dict):
            raise RuleError(str(path), line, "a rule is a mapping of keys (id, kind, trigger, alert...)")
        try:
            rules.append((Rule.parse(data), line))
        except PydanticValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            where = _readable(loc) or "rule"
            detail = f"{where}: {err['msg']}"
            if len(exc.errors()) > 1:
                detail += f" (and {len(exc.errors()) - 1} more problems)"
            raise RuleError(str(path), _line_of(node, loc), detail) from exc
    return rules


def rule_event_names(rule: Rule) -> Iterator[str]:
    """Every event name a rule refers to: its trigger's, its absence's, its past_events'."""
    yield from rule.trigger.events
    if rule.absence:
        yield rule.absence.event
    for cond in walk_conditions(rule.conditions):
        if isinstance(cond, PastEventsCondition):
            yield cond.past_events.event


def check_vocabulary(rules: RuleSet, purposes: Iterable[str], events: Iterable[str]) -> None:
    """A misspelled consent purpose or event name never matches, so the rule never fires:
    refuse names outside the declared lists, with the closest declared one."""
    known_purposes, known_events = set(purposes), {"*", *events}
    for rule in rules.rules:
        path, _, line = rules.sources[rule.id].rpartition(":")
        if rule.consent is not None and rule.consent not in known_purposes:
            raise RuleError(path, int(line), _unknown("consent purpose", rule.consent, known_purposes,
                                                      "triggers.consent_purposes"))  # fmt: skip
        for name in rule_event_names(rule):
            if name not in known_events:
                problem = _unknown("event", name, known_events, "triggers.event_names")
                raise RuleError(path, int(line), problem)


def _unknown(what: str, name: str, known: set[str], setting: str) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r} (declare it in {setting}){hint}"


def rule_files(directory: Path) -> list[Path]:
    return sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")])


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a rule file is edited, added or removed (for hot reloads)."""
    found = []
    for path in rule_files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def load_rules(directory: Path) -> RuleSet:
    """Every ``*.yaml``/``*.yml`` under ``directory``, sorted; refuses duplicates and bad rules."""
    if not directory.is_dir():
        raise RuleError(str(directory), None, "rules directory does not exist")
    rules: list[Rule] = []
    sources: dict[str, str] = {}
    for path in rule_files(directory):
        for rule, line in load_file(path):
            if rule.id in sources:
                raise RuleError(str(path), line, f"rule id {rule.id!r} already defined at {sources[rule.id]}")
            sources[rule.id] = f"{path}:{line}"
            rules.append(rule)
    return RuleSet(tuple(rules), sources)


class RuleWatcher:
    """Notices edits of the rules directory; ``poll`` gives the new rules once per change."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen = fingerprint(directory)

    def load(self) -> RuleSet:
        self.seen = fingerprint(self.directory)
        return load_rules(self.directory)

    def poll(self) -> RuleSet | None:
        """None when nothing changed; the new rules; or RuleError (raised once per bad edit)."""
        seen = fingerprint(self.directory)
        if seen == self.seen:
            return None
        self.seen = seen
        return load_rules(self.directory)
