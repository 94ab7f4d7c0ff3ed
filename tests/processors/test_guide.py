"""The reading guide in processors/__init__.py names modules that exist, and every module of the
worker, enrichment and identity (the sessions package keeps its own guide)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import processors


def test_reading_guide_names_modules_that_exist_and_every_worker_module() -> None:
    named = set(re.findall(r"``(processors(?:\.\w+)+)``", processors.__doc__ or ""))
    for name in named:
        importlib.import_module(name)
    root = Path(processors.__file__).parent
    ours = [*root.glob("worker/*.py"), *root.glob("enrichment/*.py"), *root.glob("*.py")]
    modules = {
        "processors." + ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in ours
        if p.parent != root or p.name != "__init__.py"
    }
    modules.discard("processors.worker")  # the package itself, named through its modules
    assert modules <= named, sorted(modules - named)
