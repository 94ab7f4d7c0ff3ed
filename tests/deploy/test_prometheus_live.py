"""A real Prometheus (Debian's package) scrapes a real collector, worker, trigger process and sink on
the test broker, run as deploy/docker-compose.yml runs them, fed ten simulated days by the
simulator: every scrape target is up, every rule loads, and every dashboard query returns data."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.kafka_local import free_port
from tests.deploy.dashboards import panel_queries
from tests.deploy.test_prometheus_rules import PROMETHEUS_DIR
from tools.demo.services import ServiceGroup
from tools.simulate.config import SimulationConfig
from tools.simulate.generate import generate
from tools.simulate.sender import SendPolicy, send_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WRITE_KEY = "dev-write-key"  # the default: fine on loopback


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _prometheus_config(targets: dict[str, str], path: Path) -> Path:
    """The shipped config with this run's targets and a 1 s scrape and rule evaluation."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets.pop(job["job_name"])]}]
    assert not targets, f"jobs missing from deploy/prometheus/prometheus.yml: {sorted(targets)}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def services(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Collector, worker, triggers and sink as `webhouse` commands, the trigger stages apart from the
    worker as in deploy/docker-compose.yml; returns each job's metrics address."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    ports = {"collector": free_port(), "worker": free_port(), "triggers": free_port(), "sink": free_port()}
    env = {
        "WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "WEBHOUSE_KAFKA__TOPIC_PREFIX": prefix,
        "WEBHOUSE_KAFKA__DEFAULT_PARTITIONS": "2",
        "WEBHOUSE_WEBHOUSE__ROOT": str(tmp_path / "tables"),
        "WEBHOUSE_WEBHOUSE__BATCH_MAX_SECONDS": "1",
        "WEBHOUSE_WEBHOUSE__CONSUMER_GROUP": f"{prefix}-sink",
        "WEBHOUSE_WORKER__DATA_DIR": str(tmp_path / "worker"),
        "WEBHOUSE_WORKER__SESSION__IDLE_CLOSE_INTERVAL_S": "1",
        "WEBHOUSE_TRIGGERS__SWEEP_INTERVAL_S": "1",
        # A receiver that is not there: the webhook panels see real failures.
        "WEBHOUSE_TRIGGERS__WEBHOOK_URLS": json.dumps([f"http://127.0.0.1:{free_port()}/hook"]),
        "WEBHOUSE_TRIGGERS__WEBHOOK_MAX_ATTEMPTS": "1",
        "WEBHOUSE_TRIGGERS__WEBHOOK_TIMEOUT_S": "1",
        "WEBHOUSE_COLLECTOR__PORT": str(ports["collector"]),
    }
    with ServiceGroup(env=env, log_dir=tmp_path / "logs") as group:
        collector = group.start("collector", "collector")
        worker_env = {"WEBHOUSE_METRICS__PORT": str(ports["worker"]), "WEBHOUSE_WORKER__EXTENSIONS": "[]"}
        group.start("worker", "worker", extra_env=worker_env)
        triggers_env = {"WEBHOUSE_METRICS__PORT": str(ports["triggers"])}
        group.start("triggers", "triggers", "run", extra_env=triggers_env)
        group.start("sink", "sink", extra_env={"WEBHOUSE_METRICS__PORT": str(ports["sink"])})
        url = f"http://127.0.0.1:{ports['collector']}"
        group.wait_until(collector, lambda: _http_ok(f"{url}/health/ready"), 30, "ready")
        yield {f"webhouse-{name}": f"127.0.0.1:{port}" for name, port in ports.items()}
        group.check_alive()


def _send_traffic(collector: str) -> None:
    """Ten days of a small shop (orders, sessions, malformed events), and one request with a bad key."""
    now = datetime.now(UTC).replace(microsecond=0)
    simulation = generate(SimulationConfig(seed=11, now=now, days=10, customers=60, bots=2, malformed=5))
    policy = SendPolicy(url=f"http://{collector}", write_key=WRITE_KEY, batch_size=200)
    report = asyncio.run(send_events(simulation.events, policy))
    assert report.accepted > 0
    bad_key = base64.b64encode(b"not-a-key:").decode()
    request = urllib.request.Request(
        f"http://{collector}/v1/track",
        data=b'{"event": "Probe", "userId": "u"}',
        headers={"Content-Type": "application/json", "Authorization": f"Basic {bad_key}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()  # the error holds the response open
    assert refused.value.code == 401


@pytest.fixture
def prometheus(services: dict[str, str], tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: `make prometheus-deps` installs Debian's prometheus package"
    port = free_port()
    config = _prometheus_config(dict(services), tmp_path / "prometheus.yml")
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed after the process ends
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _http_ok(f"{url}/-/ready"):
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus not ready after 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = _get_json(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _wait_for(what: str, check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_prometheus_scrapes_every_service_and_every_dashboard_query_has_data(
    services: dict[str, str], prometheus: str
) -> None:
    _send_traffic(services["webhouse-collector"])

    def targets_up() -> bool:
        active = _get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"] for t in active if t["health"] == "up"} == set(services)

    _wait_for("every scrape target up", targets_up, 20)
    groups = _get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    assert {g["name"] for g in groups} == {"webhouse-recording", "webhouse-alerts"}
    assert all(rule["health"] != "err" for g in groups for rule in g["rules"]), groups

    def rows_landed() -> bool:
        return bool(_query(prometheus, "sum(webhouse_sink_rows_written_total) > 0"))

    _wait_for("rows landed by the sink", rows_landed, 60)
    pending = list(panel_queries())

    def all_have_data() -> bool:
        pending[:] = [q for q in pending if not _query(prometheus, q.expr)]
        return not pending

    try:
        _wait_for("every dashboard query returns data", all_have_data, 45)
    except AssertionError:
        missing = "\n".join(f"  {q.dashboard} / {q.panel}: {q.expr}" for q in pending)
        seen = sorted(
            {r["metric"].get("__name__", "") for r in _query(prometheus, '{__name__=~"webhouse.+"}')}
        )
        alerts = _query(prometheus, "webhouse_trigger_alerts_total")
        pytest.fail(f"queries without data:\n{missing}\nseries present: {seen}\nalerts: {alerts}")
