"""Every schema parses, and stays readable: new readers must read old data."""

import copy
import json
import subprocess
from pathlib import Path

import pytest

from pipeline.schema_compat import check_backward
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


def _committed_versions(path: Path) -> list[tuple[str, dict]]:
    rel = path.relative_to(SCHEMAS_DIR.parent)
    log = subprocess.run(
        ["git", "log", "--format=%H", "--", str(rel)],
        cwd=SCHEMAS_DIR.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    versions = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{rel}"],
            cwd=SCHEMAS_DIR.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0:
            versions.append((commit[:10], json.loads(shown.stdout)))
    return versions


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_backward_compatible_with_every_committed_version(path: Path) -> None:
    current = json.loads(path.read_text())
    for commit, old in _committed_versions(path):
        problems = check_backward(current, old)
        assert not problems, f"{path.name} cannot read data written by {commit}: {problems}"


def test_checker_catches_breaking_changes() -> None:
    base = json.loads((SCHEMAS_DIR / "customer_event.avsc").read_text())

    required = copy.deepcopy(base)
    required["fields"].append({"name": "tier", "type": "string"})
    assert check_backward(required, base) == ["$.tier: new field without a default"]

    optional = copy.deepcopy(base)
    optional["fields"].append({"name": "tier", "type": ["null", "string"], "default": None})
    assert check_backward(optional, base) == []

    narrowed = copy.deepcopy(base)
    narrowed["fields"][1]["type"]["symbols"].remove("group")
    assert any("enum symbols removed" in p for p in check_backward(narrowed, base))

    retyped = copy.deepcopy(base)
    retyped["fields"][0]["type"] = "long"  # message_id string -> long
    assert check_backward(retyped, base) == ["$.message_id: type changed from string to long"]
