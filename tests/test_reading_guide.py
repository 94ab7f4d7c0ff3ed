"""The README's reading guide stays true: every module or folder it names exists and imports."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _guide_paths() -> list[str]:
    text = (ROOT / "README.md").read_text()
    guide = text.split("## Reading guide", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| [^|]+ \| `([^`]+)` \|", guide, flags=re.MULTILINE)


def test_reading_guide_names_real_importable_modules() -> None:
    paths = _guide_paths()
    assert len(paths) >= 10
    for rel in paths:
        path = ROOT / rel
        assert path.exists(), rel
        if rel.endswith(".py") or (path.is_dir() and (path / "__init__.py").exists()):
            importlib.import_module(rel.removesuffix(".py").rstrip("/").replace("/", "."))


def test_readme_commands_are_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "\nmake test\n" in readme and "\nmake demo\n" in readme
