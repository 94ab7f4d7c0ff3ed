"""The Grafana dashboards under deploy/grafana and the PromQL of their panels (shared by the tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"


@dataclass(frozen=True, slots=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panel_queries() -> list[PanelQuery]:
    return [
        PanelQuery(name, panel["title"], target["expr"])
        for name, doc in dashboards().items()
        for panel in doc["panels"]
        for target in panel["targets"]
    ]
