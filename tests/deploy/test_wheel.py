"""The wheel is a complete install: built from the sources, installed into a fresh virtualenv outside
the repository, it validates its starter rules, round-trips Avro with its own schemas and lists its
settings from another directory.

Dependencies are not downloaded again: a .pth line, written after the wheel is installed, puts the
development virtualenv's site-packages at the end of the fresh one's path. Only the project itself
comes from the wheel, which the test checks by where each module was imported from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(*argv: str | Path, cwd: Path, timeout: float = 180) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOUSE_", "PYTHON"))}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _copy_sources(target: Path) -> None:
    """The files git would commit (tracked, or new and not ignored): no build/ left-overs."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its bin directory."""
    root = tmp_path_factory.mktemp("wheel")
    _copy_sources(root / "src")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", root / "src", cwd=root)
    (wheel,) = (root / "dist").glob("webhouse-*.whl")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=root,
    )
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).strip()
    )
    (site / "zz_webhouse_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with nothing of the repository in it."""
    return tmp_path


def test_the_project_is_imported_from_the_wheel_with_its_data(installed: Path, elsewhere: Path) -> None:
    out = _run(
        installed / "python",
        "-c",
        "import pipeline, schemas, triggers, tools; "
        "from pipeline.serde import SCHEMAS_DIR; from pipeline.kafka_local import POM; "
        "from pipeline.settings import load_settings; "
        "print(pipeline.__file__, tools.__file__, triggers.__file__, SCHEMAS_DIR, POM.is_file(), "
        "sorted(p.name for p in load_settings().triggers.rules_dir.glob('*.yaml'))[:1])",
        cwd=elsewhere,
    )
    venv = str(installed.parent)
    pipeline_file, tools_file, triggers_file, schemas_dir, pom_found, first_rule = out.split(" ", 5)
    for path in (pipeline_file, tools_file, triggers_file, schemas_dir):
        assert path.startswith(venv), f"{path} is not from the wheel"
    assert pom_found == "True"
    assert first_rule.strip() == "['browse_abandonment.yaml']"


def test_webhouse_triggers_validate_uses_the_packaged_starter_rules(installed: Path, elsewhere: Path) -> None:
    out = _run(installed / "webhouse", "triggers", "validate", cwd=elsewhere)
    starters = len(list((REPO / "triggers" / "rules").glob("*.yaml")))
    assert out.startswith(f"{starters} rules OK")


def test_an_avro_round_trip_with_the_packaged_schemas(installed: Path, elsewhere: Path) -> None:
    script = (
        "from datetime import UTC, datetime\n"
        "from pipeline.deadletter import DeadLetter\n"
        "from pipeline.serde import SchemaCatalog, make_serde\n"
        "catalog = SchemaCatalog()\n"
        "letter = DeadLetter('collector', 'missing_field', 'no event name', b'{}', datetime.now(UTC))\n"
        "serde = make_serde('dead_letter', None)\n"
        "record = letter.to_record()\n"
        "decoded = serde.decode(serde.encode(record, 't'), 't')\n"
        "assert decoded['reason'] == 'missing_field' and decoded['payload'] == b'{}', decoded\n"
        "make_serde('customer_event', None)\n"
        "print('round trip ok')\n"
    )
    assert _run(installed / "python", "-c", script, cwd=elsewhere).strip() == "round trip ok"


def test_webhouse_config_runs_from_another_directory(installed: Path, elsewhere: Path) -> None:
    out = _run(installed / "webhouse", "config", cwd=elsewhere)
    (rules_line,) = [line for line in out.splitlines() if line.startswith("triggers.rules_dir ")]
    assert str(installed.parent) in rules_line
    assert "kafka.create_topics" in out and "metrics.host" in out
