"""The reading guide in triggers/__init__.py names modules that exist, and every module is named."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import triggers


def test_reading_guide_is_true() -> None:
    named = re.findall(r"``(triggers\.\w+)``", triggers.__doc__ or "")
    for name in named:
        importlib.import_module(name)
    package = Path(triggers.__file__).parent
    modules = {f"triggers.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    assert modules == set(named)
