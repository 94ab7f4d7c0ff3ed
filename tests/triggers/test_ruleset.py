"""Rules as data: the starter pack loads; a bad rule is refused with file, line and what."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import RuleError
from triggers.ruleset import load_file, load_rules, parse_duration

from .builders import RULES_DIR

GOOD = """\
id: sample
kind: marketing
consent: marketing_email
trigger:
  source: event
  events: [Product Viewed]
conditions:
  - {field: event.product_id, op: exists}
alert:
  type: sample
  channel: email
  message: "viewed {event.product_id}"
cooldown: 1d
"""


def write(tmp_path: Path, text: str, name: str = "rule.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path: Path) -> RuleError:
    with pytest.raises(RuleError) as info:
        load_file(path)
    assert info.value.path == str(path)
    return info.value


def test_starter_pack_loads_every_rule() -> None:
    rules = load_rules(RULES_DIR)
    assert sorted(rules.ids()) == [
        "browse_abandonment",
        "cart_abandonment",
        "churn_risk",
        "cross_sell",
        "email_click_no_order",
        "first_purchase_welcome",
        "vip_tier_reached",
        "win_back",
    ]
    assert rules.history_window_s == 7 * 86400


def test_a_good_rule_loads_with_its_line(tmp_path: Path) -> None:
    [(rule, line)] = load_file(write(tmp_path, "# a comment\n" + GOOD))
    assert (rule.id, line, rule.cooldown) == ("sample", 2, 86400)


@pytest.mark.parametrize(
    ("old", "new", "line", "detail"),
    [
        ("op: exists", "op: bigger", 8, "conditions.0.op"),
        ("op: exists", "op: gt", 8, "needs exactly one of value or ref"),
        ("event.product_id, op", "session.end, op", 8, "rules triggered by event can use"),
        ("event.product_id, op", "event.colour, op", 8, "event has no field 'colour'"),
        ("cooldown: 1d", "cooldown: soon", 13, "'soon' is not a duration"),
        ("consent: marketing_email\n", "", 1, "must name the consent purpose"),
        ("  channel: email\n", "  channel: email\n  colour: red\n", 12, "alert.colour: Extra inputs"),
        ("  events: [Product Viewed]\n", "", 4, "source event needs a list of events"),
        ("source: event", "source: tomorrow", 5, "trigger.source"),
        ('"viewed {event.product_id}"', '"viewed {event.nope}"', 12, "event has no field 'nope'"),
    ],
)
def test_bad_rules_are_refused_with_the_line(
    tmp_path: Path, old: str, new: str, line: int, detail: str
) -> None:
    assert old in GOOD
    error = refused(write(tmp_path, GOOD.replace(old, new)))
    assert error.line == line
    assert detail in error.detail
    assert str(error).startswith(f"{tmp_path / 'rule.yaml'}:{line}: ")


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    error = refused(write(tmp_path, GOOD.replace("type: sample", "type: [sample")))
    assert error.line is not None and error.line >= 10
    assert "not valid YAML" in error.detail


def test_a_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    error = refused(write(tmp_path, GOOD + "---\n- just\n- a list\n"))
    assert error.line == 15
    assert "a rule is a mapping" in error.detail


def test_past_events_need_bounds_and_an_event_source(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - {field: event.product_id, op: exists}",
        "  - {field: event.product_id, op: exists}\n  - past_events: {event: X, within: 7d}",
    )
    error = refused(write(tmp_path, text))
    assert (error.line, "needs min and/or max" in error.detail) == (9, True)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, "\n\n" + GOOD, "b.yml")
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path)
    assert (info.value.path, info.value.line) == (str(tmp_path / "b.yml"), 3)
    assert "already defined at" in info.value.detail and "a.yaml:1" in info.value.detail


def test_several_rules_per_file(tmp_path: Path) -> None:
    write(tmp_path, GOOD + "---\n" + GOOD.replace("id: sample", "id: other"))
    rules = load_rules(tmp_path)
    assert rules.ids() == ["sample", "other"]
    assert rules.sources["other"].endswith("rule.yaml:15")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("2w", 1209600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="does not exist"):
        load_rules(tmp_path / "nope")


def test_watcher_reloads_edits_once_and_reports_bad_ones(tmp_path: Path) -> None:
    import os

    from triggers.ruleset import RuleWatcher

    path = write(tmp_path, GOOD)
    watcher = RuleWatcher(tmp_path)
    assert watcher.load().ids() == ["sample"]
    assert watcher.poll() is None
    path.write_text(GOOD.replace("cooldown: 1d", "cooldown: 2d"))
    os.utime(path, ns=(1, 10**18))  # a distinct mtime even on coarse clocks
    reloaded = watcher.poll()
    assert reloaded is not None and reloaded.rules[0].cooldown == 2 * 86400
    assert watcher.poll() is None
    path.write_text(GOOD.replace("op: exists", "op: bogus"))
    os.utime(path, ns=(1, 2 * 10**18))
    with pytest.raises(RuleError):
        watcher.poll()
    assert watcher.poll() is None  # reported once; the caller keeps its previous rules
