"""Where the webhouse is: the configured root, else `webhouse demo`'s tables; never a silent empty answer.

An analyst pointed at a root with no table used to get ``count = 0`` and conclude there
was no data. Here a root holding none of the declared tables is an error naming the
setting and the fix. One convenience: when ``webhouse.root`` was not set at all and the
default root is empty, the tables of a `webhouse demo` run in the default work directory
are used (said on stderr), so the README's commands answer right after ``make demo``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.errors import SettingsError
from pipeline.settings import Settings
from sinks.store import DeltaStore
from sinks.tables import default_specs

# `webhouse demo --workdir` default (tools/demo/cli.py) + the tables directory it writes.
DEMO_TABLES = Path(".webhouse/demo/tables")
ROOT_HELP = "set webhouse.root (env WEBHOUSE_WEBHOUSE__ROOT) to the directory or s3:// prefix of the tables"


def landed_tables(settings: Settings) -> list[str]:
    """The declared tables that exist under ``webhouse.root``."""
    store = DeltaStore(settings.webhouse)
    return [s.name for s in default_specs(settings.webhouse.events_source) if store.open(s.name) is not None]


def _with_root(settings: Settings, root: str) -> Settings:
    return settings.model_copy(update={"webhouse": settings.webhouse.model_copy(update={"root": root})})


def locate(settings: Settings) -> Settings:
    """``settings`` with a root that holds tables, or a SettingsError saying how to fix it."""
    root = settings.webhouse.root
    if landed_tables(settings):
        return settings
    if "root" not in settings.webhouse.model_fields_set:
        demo = _with_root(settings, str(DEMO_TABLES.resolve()))
        if landed_tables(demo):
            print(f"webhouse: reading the demo's tables in {DEMO_TABLES} ({ROOT_HELP})", file=sys.stderr)
            return demo
    where = "does not exist" if "://" not in root and not Path(root).exists() else "holds no webhouse table"
    hint = f", e.g. WEBHOUSE_WEBHOUSE__ROOT={DEMO_TABLES} after `make demo`" if "://" not in root else ""
    raise SettingsError(f"webhouse root {root!r} {where}: {ROOT_HELP}{hint}")
