"""Land hand-made records straight into a webhouse root (no Kafka): the harness of the pure tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipeline.settings import Settings, TriggerSettings, WebhouseSettings
from sinks.duck import connect
from sinks.pii import PiiHasher
from sinks.store import DeltaStore, WriteResult
from sinks.tables import Table, build_tables, default_specs

SECRET = "test-secret"


def settings_for(root: Path, triggers: TriggerSettings | None = None, **webhouse: Any) -> Settings:
    return Settings(
        webhouse=WebhouseSettings(root=str(root), pii_hmac_secret=SECRET, **webhouse),
        triggers=triggers or TriggerSettings(),
    )


class Webhouse:
    def __init__(self, root: Path, triggers: TriggerSettings | None = None, **webhouse: Any) -> None:
        self.settings = settings_for(root, triggers, **webhouse)
        self.store = DeltaStore(self.settings.webhouse)
        self.tables = {t.name: t for t in build_tables(PiiHasher(SECRET), default_specs("raw"))}
        self._offset = 0

    def land(self, source: str, records: list[dict[str, Any]]) -> list[WriteResult]:
        """Land records of one topic into every table fed by it, like the sink does."""
        results = []
        self._offset += len(records)
        for table in self.tables.values():
            if table.spec.source != source:
                continue
            rows = [row for r in records for row in table.rows(r)]
            results.append(self.land_rows(table, rows))
        return results

    def land_rows(self, table: Table, rows: list[dict[str, Any]]) -> WriteResult:
        return self.store.append(table, table.to_arrow(rows), {f"test:{table.name}": self._offset})

    def events(self, records: list[dict[str, Any]]) -> None:
        self.land("raw_events", records)

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect(self.settings)
