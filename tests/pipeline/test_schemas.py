"""Every schema parses and evolves safely: new readers read old data, old readers new data."""

import copy
import json
import re
from pathlib import Path

import pytest

from pipeline.schema_evolution import Incompatibility, check_all, check_schema, released_versions
from pipeline.serde import SCHEMAS_DIR, SchemaCatalog

SCHEMA_FILES = sorted(SCHEMAS_DIR.glob("*.avsc"))


def test_schemas_folder_holds_only_avro_schemas() -> None:
    stray = [p for p in SCHEMAS_DIR.rglob("*") if p.is_file() and p.suffix != ".avsc"]
    assert not stray


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_every_schema_parses_and_optional_fields_default_to_null(path: Path) -> None:
    SchemaCatalog()  # parses all of them, history included
    raw = json.loads(path.read_text())

    def walk(record: dict, where: str) -> None:
        for field in record.get("fields", []):
            types = field["type"]
            if isinstance(types, list) and "null" in types:
                assert types[0] == "null" and field.get("default", "absent") is None, (
                    f"{where}.{field['name']}"
                )
            for t in types if isinstance(types, list) else [types]:
                if isinstance(t, dict) and t.get("type") == "record":
                    walk(t, f"{where}.{field['name']}")

    walk(raw, path.stem)


def test_every_schema_has_its_last_released_version_in_history() -> None:
    # The catalog decodes old data by the writer's fingerprint, so a released version that is
    # missing from history/ makes the events it wrote unreadable after the next change.
    unreleased = [p.stem for p in SCHEMA_FILES if not released_versions(p.stem)]
    assert unreleased == []
    history = list(SCHEMAS_DIR.glob("history/*/*.avsc"))
    assert {p.parent.name for p in history} <= {p.stem for p in SCHEMA_FILES}, "history of a removed schema"
    assert [p.name for p in history if not re.fullmatch(r"v[1-9][0-9]*\.avsc", p.name)] == []


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_compatible_both_ways_with_every_released_version(path: Path) -> None:
    assert [str(problem) for problem in check_schema(path)] == []


def _release(tmp_path: Path, name: str, versions: list[dict]) -> Path:
    """A schemas/ folder in tmp_path whose history/<name>/ holds ``versions`` (v1, v2, ...)."""
    history = tmp_path / "history" / name
    history.mkdir(parents=True)
    for number, raw in enumerate(versions, start=1):
        (history / f"v{number}.avsc").write_text(json.dumps(raw))
    return tmp_path / f"{name}.avsc"


def _released(name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in released_versions(name)]


def _kinds(problems: list[Incompatibility]) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(p.version.stem, p.direction.value): p.kinds for p in problems}


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_a_new_required_field_breaks_backward_with_every_released_version(path: Path, tmp_path: Path) -> None:
    versions = _released(path.stem)
    broken = copy.deepcopy(json.loads(path.read_text()))
    broken["fields"].append({"name": "tier", "type": "string"})  # old data has no tier
    current = _release(tmp_path, path.stem, versions)
    current.write_text(json.dumps(broken))

    assert _kinds(check_schema(current, tmp_path)) == {
        (f"v{n}", "backward"): ("reader_field_missing_default_value",) for n in range(1, len(versions) + 1)
    }


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_a_retyped_field_breaks_both_ways_with_every_released_version(path: Path, tmp_path: Path) -> None:
    versions = _released(path.stem)
    broken = copy.deepcopy(json.loads(path.read_text()))
    first = broken["fields"][0]
    assert first["type"] == "string", "the test retypes a string field"
    first["type"] = "boolean"
    current = _release(tmp_path, path.stem, versions)
    current.write_text(json.dumps(broken))

    assert _kinds(check_schema(current, tmp_path)) == {
        (f"v{n}", direction): ("type_mismatch",)
        for n in range(1, len(versions) + 1)
        for direction in ("backward", "forward")
    }


def test_a_break_with_only_an_old_version_is_caught(tmp_path: Path) -> None:
    # v1 has a field that v2 dropped: the current schema still matches v2, and must fail on v1.
    base = json.loads((SCHEMAS_DIR / "identity_link.avsc").read_text())
    v1 = copy.deepcopy(base)
    v1["fields"].append({"name": "legacy_score", "type": "long"})
    current = _release(tmp_path, "identity_link", [v1, base])
    retyped = copy.deepcopy(base)
    retyped["fields"].append({"name": "legacy_score", "type": "string", "default": ""})
    current.write_text(json.dumps(retyped))

    assert _kinds(check_schema(current, tmp_path)) == {
        ("v1", "backward"): ("type_mismatch",),
        ("v1", "forward"): ("type_mismatch",),
    }


def test_added_optional_fields_and_defaulted_enum_symbols_are_compatible(tmp_path: Path) -> None:
    base = json.loads((SCHEMAS_DIR / "customer_event.avsc").read_text())
    current = _release(tmp_path, "customer_event", [base])
    grown = copy.deepcopy(base)
    grown["fields"].append({"name": "tier", "type": ["null", "string"], "default": None})
    channel = next(f for f in grown["fields"] if f["name"] == "channel")
    channel["type"]["symbols"].append("kiosk")  # old readers fall back to the enum's default
    current.write_text(json.dumps(grown))

    assert check_schema(current, tmp_path) == []


def test_a_new_symbol_in_an_enum_without_default_breaks_forward_only(tmp_path: Path) -> None:
    base = json.loads((SCHEMAS_DIR / "customer_event.avsc").read_text())
    current = _release(tmp_path, "customer_event", [base])
    grown = copy.deepcopy(base)
    call_type = next(f for f in grown["fields"] if f["name"] == "type")
    assert "default" not in call_type["type"]
    call_type["type"]["symbols"].append("merge")
    current.write_text(json.dumps(grown))

    assert _kinds(check_schema(current, tmp_path)) == {("v1", "forward"): ("missing_enum_symbols",)}


def test_check_all_covers_every_schema_file(tmp_path: Path) -> None:
    for name in ("customer_event", "session"):
        raw = json.loads((SCHEMAS_DIR / f"{name}.avsc").read_text())
        broken = copy.deepcopy(raw)
        broken["fields"].append({"name": "tier", "type": "string"})
        _release(tmp_path, name, [raw]).write_text(json.dumps(broken))

    assert sorted(p.schema for p in check_all(tmp_path)) == ["customer_event", "session"]
