"""The reading guide in sinks/__init__.py names modules that exist, and every module is named."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import sinks


def test_reading_guide_names_every_module() -> None:
    named = set(re.findall(r"``(\w+)``", sinks.__doc__ or "")) - {"connect"}
    for name in named:
        importlib.import_module(f"sinks.{name}")
    modules = {p.stem for p in Path(sinks.__file__).parent.glob("*.py")} - {"__init__"}
    assert modules == named


def test_connect_is_public(tmp_path: Path) -> None:
    from tests.sinks.land import settings_for

    con = sinks.connect(settings_for(tmp_path))
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(0,)]
