"""The Prometheus configuration and alerting rules, checked and unit-tested by Debian's promtool
(`make prometheus-deps` installs it; never skipped: a missing promtool fails here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "webhouse.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "webhouse_test.yml"


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: `make prometheus-deps` installs Debian's prometheus package"
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_scrape_config_and_its_rule_files_are_valid() -> None:
    out = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "1 rule files found" in out


def test_the_scrape_config_names_every_service() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"webhouse-collector", "webhouse-worker", "webhouse-triggers", "webhouse-sink"}


def test_the_alerting_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", str(RULE_TESTS))


def _alerts() -> set[str]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [check for case in cases for check in case.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    assert _alerts() == fired
    assert _alerts() == quiet
    assert {
        "WebhouseConsumerLagGrowing",
        "WebhouseDeadLettersHigh",
        "WebhouseStageTransactionsAborted",
        "WebhouseWebhookFailing",
        "WebhouseCollectorUnavailable",
        "WebhouseSinkCommitSlow",
        "WebhouseNoEvents",
    } <= _alerts()
