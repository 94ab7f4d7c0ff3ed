"""The Grafana dashboards are well-formed, provisioned, and query only metrics the services export
(that each query returns data is checked against a real Prometheus in test_prometheus_live.py)."""

from __future__ import annotations

import re

import yaml
from prometheus_client import CollectorRegistry

from tests.deploy.dashboards import GRAFANA_DIR, dashboards, panel_queries
from tests.deploy.test_prometheus_rules import RULES

DATASOURCE_UID = "webhouse-prometheus"
EXPECTED = {
    "webhouse-overview",
    "webhouse-collector",
    "webhouse-stream",
    "webhouse-triggers",
    "webhouse-sink",
}


def exported_metric_names() -> set[str]:
    """Every series name the services can export, built from their own metric classes."""
    from pipeline.collector.metrics import CollectorMetrics
    from pipeline.runtime.metrics import RuntimeMetrics
    from processors.worker.metrics import WorkerMetrics
    from sinks.metrics import SinkMetrics
    from triggers.metrics import TriggerMetrics

    registries = [CollectorRegistry() for _ in range(5)]
    CollectorMetrics.create(registries[0])
    WorkerMetrics(registries[1])
    SinkMetrics(registries[2])
    TriggerMetrics(registries[3])
    RuntimeMetrics(registries[4])
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in suffixes[family.type]
    }


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_the_five_dashboards_are_there_with_unique_uids() -> None:
    docs = dashboards()
    assert {doc["uid"] for doc in docs.values()} == EXPECTED
    assert {f"{uid}.json" for uid in EXPECTED} == set(docs)


def test_panels_are_well_formed() -> None:
    for name, doc in dashboards().items():
        assert doc["title"].startswith("webhouse: "), name
        ids = [panel["id"] for panel in doc["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in doc["panels"]:
            where = f"{name}: {panel['title']}"
            assert panel["datasource"]["uid"] == DATASOURCE_UID, where
            assert panel["targets"], where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID, where
                assert target["expr"].strip(), where


def test_every_query_names_only_metrics_the_services_export() -> None:
    known = exported_metric_names() | recorded_names() | {"up"}
    for query in panel_queries():
        unquoted = re.sub(r'"[^"]*"', '""', query.expr)  # label values are not metric names
        names = set(re.findall(r"\b(?:webhouse[_:][a-z0-9_:]*|up)\b", unquoted))
        assert names, query
        assert names <= known, f"{query.dashboard} / {query.panel}: unknown {sorted(names - known)}"


def test_grafana_provisioning_points_at_the_dashboards_and_the_datasource() -> None:
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, "prometheus")
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/webhouse.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load((GRAFANA_DIR.parent / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in volumes
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]
