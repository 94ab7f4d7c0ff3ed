"""Imports run down: a folder imports only the floors below it (docs/architecture.md draws them).

Floors, lowest first: the base (`pipeline/` without the collector), the touchpoints
(`pipeline/collector/`), the stages (`processors/`, `triggers/`, `sinks/`: peers that talk only
through Kafka topics, never by import), the tools that use every part (`tools/`), then `bench/`.
Nothing outside `tests/` imports `tests`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS: dict[str, int] = {
    "pipeline": 0,
    "pipeline.collector": 1,
    "processors": 2,
    "triggers": 2,
    "sinks": 2,
    "tools": 3,
    "bench": 4,
}


def part_of(module: str) -> str | None:
    """The part a dotted module belongs to: the longest FLOORS key that prefixes it."""
    best = None
    for part in FLOORS:
        if (module == part or module.startswith(part + ".")) and (best is None or len(part) > len(best)):
            best = part
    return best


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def violations() -> list[str]:
    wrong = []
    for top in ("pipeline", "processors", "triggers", "sinks", "tools", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            here = part_of(module_name(path))
            assert here is not None
            for target in imported_modules(path):
                if target == "tests" or target.startswith("tests."):
                    wrong.append(f"{path.relative_to(ROOT)} imports {target} (tests are not a part)")
                    continue
                there = part_of(target)
                if there is None or there == here:
                    continue
                if FLOORS[there] >= FLOORS[here]:
                    wrong.append(f"{path.relative_to(ROOT)} ({here}) imports {target} ({there})")
    return wrong


def test_imports_only_run_down() -> None:
    assert violations() == []


def test_the_rule_sees_an_upward_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from sinks.duck import connect\nimport tools.cli\nfrom pipeline import settings\n")
    assert imported_modules(probe) == {"sinks.duck", "tools.cli", "pipeline"}
    assert part_of("pipeline.collector.segment") == "pipeline.collector"
    assert part_of("pipeline.runtime.clock") == "pipeline"
    assert FLOORS[part_of("sinks.duck") or ""] > FLOORS[part_of("pipeline.settings") or ""]
