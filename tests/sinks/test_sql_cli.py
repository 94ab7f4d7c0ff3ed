"""`webhouse sql` / `webhouse report` answer honestly: a missing root, a bad query and an unknown
table are one-line errors saying what to do; the shell lists tables and their columns."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import duckdb
import pytest

from tests.sinks.land import SECRET, Webhouse
from tools.cli import main
from tools.records import event


@pytest.fixture
def landed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tables"
    Webhouse(root).events([event("m1"), event("m2", channel="ios")])
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(root))
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET", SECRET)
    return root


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("webhouse: error: "), err
    return err


def test_missing_root_names_the_setting_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path / "nowhere"))
    assert main(["sql", "-c", "SELECT count(*) FROM events"]) == 2
    err = _one_line_error(capsys)
    assert "does not exist" in err and "webhouse.root" in err and "WEBHOUSE_WEBHOUSE__ROOT=" in err


def test_empty_root_is_an_error_not_a_zero_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path))
    assert main(["report", "rfm"]) == 2
    assert "holds no webhouse table" in _one_line_error(capsys)


def test_unset_root_finds_the_demo_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WEBHOUSE_WEBHOUSE__ROOT", raising=False)
    monkeypatch.delenv("WEBHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)
    Webhouse(tmp_path / ".webhouse" / "demo" / "tables").events([event("m1")])
    assert main(["sql", "--format", "csv", "-c", "SELECT count(*) AS n FROM events"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["n", "1"]
    assert "reading the demo's tables in .webhouse/demo/tables" in out.err


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM nope", "Table with name nope does not exist"),
        ("SELEC 1", "syntax error"),
        ("SELECT nope FROM events", 'column "nope" not found'),
    ],
)
def test_sql_errors_are_one_line(
    landed: Path, capsys: pytest.CaptureFixture[str], query: str, expected: str
) -> None:
    assert main(["sql", "-c", query]) == 2
    assert expected in _one_line_error(capsys)


def test_debug_shows_the_traceback(landed: Path) -> None:
    with pytest.raises(duckdb.CatalogException):
        main(["sql", "--debug", "-c", "SELECT * FROM nope"])


def test_several_statements_print_each_result(landed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--format", "csv", "-c", "SELECT 1 AS a; SELECT count(*) AS n FROM events"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a", "1", "", "n", "2"]


def test_shell_tables_schema_and_errors_keep_the_session(
    landed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = ".tables\n.schema identity_map\nSELECT nope;\nSELECT count(*) AS n\nFROM events;\n.quit\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["sql", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    tables = {line.split(",")[0] for line in out.splitlines() if line.endswith(",view")}
    assert {"events", "orders", "rfm", "value_tiers", "funnel", "events_stitched"} <= tables
    assert "customer_id,VARCHAR" in out  # .schema identity_map
    assert 'error: Binder Error: Referenced column "nope" was not found' in out
    assert out.endswith("..> n\r\n2\r\nwebhouse> ")  # the session went on after the error
