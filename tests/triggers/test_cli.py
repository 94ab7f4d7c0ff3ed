"""`webhouse triggers validate | list | test` through the real command entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.cli import main

from .builders import RULES_DIR

EVENTS = Path(__file__).parent / "data" / "segment_events.jsonl"


def test_validate_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["triggers", "validate"]) == 0
    assert capsys.readouterr().out == "8 rules OK (8 enabled)\n"
    assert main(["triggers", "list"]) == 0
    out = capsys.readouterr().out
    assert "cart_abandonment" in out and "cart_abandonment.yaml:3" in out


def test_validate_reports_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (RULES_DIR / "cart_abandonment.yaml").read_text().replace("op: not_empty", "op: nonempty")
    (tmp_path / "bad.yaml").write_text(text)
    assert main(["triggers", "validate", "--rules", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.yaml'}:10: conditions.0.op" in err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "consent: marketing_email",
            "consent: marketing_emial",
            "unknown consent purpose 'marketing_emial' (declare it in triggers.consent_purposes); "
            "did you mean 'marketing_email'?",
        ),
        (
            "event: Order Completed",
            "event: Order Complete",
            "unknown event 'Order Complete' (declare it in triggers.event_names); "
            "did you mean 'Order Completed'?",
        ),
        (
            "event: Order Completed",
            "event: Quux",
            "unknown event 'Quux' (declare it in triggers.event_names)\n",
        ),
    ],
)
def test_validate_refuses_undeclared_purposes_and_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expected: str
) -> None:
    """A misspelled purpose or event name would never match: the rule would never fire."""
    text = (RULES_DIR / "cart_abandonment.yaml").read_text()
    assert old in text
    (tmp_path / "bad.yaml").write_text(text.replace(old, new))
    assert main(["triggers", "validate", "--rules", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.yaml'}:3: {expected}" in err


def test_declared_custom_events_and_purposes_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (RULES_DIR / "cart_abandonment.yaml").read_text()
    text = text.replace("event: Order Completed", "event: Quote Accepted").replace(
        "marketing_email", "sms_promos"
    )
    (tmp_path / "custom.yaml").write_text(text)
    monkeypatch.setenv("WEBHOUSE_TRIGGERS__EVENT_NAMES", '["Quote Accepted"]')
    monkeypatch.setenv("WEBHOUSE_TRIGGERS__CONSENT_PURPOSES", '["sms_promos"]')
    assert main(["triggers", "validate", "--rules", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "1 rules OK (1 enabled)\n"


def test_test_prints_fired_and_suppressed_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["triggers", "test", str(EVENTS), "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("line 9: skipped:")
    alerts = [json.loads(line) for line in lines[1:]]
    summary = sorted((a["rule_id"], a["customer_id"], a["status"], a["suppression_reason"]) for a in alerts)
    assert summary == [
        ("cart_abandonment", "ada", "fired", None),
        ("cart_abandonment", "bob", "suppressed", "consent_missing"),
        ("cross_sell", "cy", "suppressed", "consent_missing"),
        ("first_purchase_welcome", "cy", "suppressed", "consent_missing"),
    ]
    [ada] = [a for a in alerts if a["customer_id"] == "ada"]
    assert ada["time"] == "2026-11-02T10:00:10+00:00"
    assert ada["reasons"][0] == {"condition": "session.products_added not_empty", "actual": ["b-1"]}
    assert captured.err.strip() == "1 fired, 3 suppressed (consent_missing: 3)"


def test_test_one_rule_until_a_time_shows_pending_windows(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["triggers", "test", str(EVENTS), "--rule", "cart_abandonment", "--until", "2026-11-02T09:45:00Z"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "PENDING    cart_abandonment: fires at 2026-11-02 10:00:10+00:00 unless 'Order Completed'" in out
    assert "FIRED" not in out and "first_purchase" not in out


def test_unknown_rule_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["triggers", "test", str(EVENTS), "--rule", "nope"]) == 2
    assert "no rule 'nope'" in capsys.readouterr().err
