"""Published default secrets are refused beyond loopback; `webhouse init` makes fresh ones;
metrics bind where metrics.host says."""

from __future__ import annotations

import os
import stat
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.kafka_local import free_port
from pipeline.metrics_http import serve_metrics
from pipeline.safe_defaults import (
    SECRET_KEYS,
    FreshSecrets,
    default_secrets,
    is_loopback,
    refuse_default_secrets,
)
from pipeline.settings import load_settings
from tools.cli import main


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.0.0.7", False),
        ("collector.internal", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_every_default_secret_is_detected() -> None:
    assert default_secrets(load_settings()) == list(SECRET_KEYS)


def test_a_reachable_collector_with_default_secrets_is_refused_naming_each() -> None:
    with pytest.raises(SettingsError) as err:
        refuse_default_secrets(load_settings(), "collector", "0.0.0.0")
    message = str(err.value)
    assert "collector.write_keys (env WEBHOUSE_COLLECTOR__WRITE_KEYS)" in message
    assert "collector.email.link_secrets (env WEBHOUSE_COLLECTOR__EMAIL__LINK_SECRETS)" in message
    assert "webhouse.pii_hmac_secret" not in message  # not a secret the collector uses
    assert "webhouse init" in message


def test_loopback_keeps_the_defaults_for_a_laptop() -> None:
    for service in ("collector", "worker", "triggers", "sink"):
        refuse_default_secrets(load_settings(), service, "127.0.0.1")


def test_a_published_key_next_to_a_fresh_one_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOUSE_COLLECTOR__WRITE_KEYS", '{"dev-write-key": "dev", "k-fresh-1234": "web"}')
    links = '["fresh-link", "change-me-email-link-secret"]'
    monkeypatch.setenv("WEBHOUSE_COLLECTOR__EMAIL__LINK_SECRETS", links)
    assert default_secrets(load_settings(), ("collector.write_keys", "collector.email.link_secrets")) == [
        "collector.write_keys",
        "collector.email.link_secrets",
    ]


def test_an_empty_secret_counts_as_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET", "")
    with pytest.raises(SettingsError, match=r"webhouse\.pii_hmac_secret"):
        refuse_default_secrets(load_settings(), "sink", "0.0.0.0")


def test_init_writes_a_private_config_that_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "webhouse.toml"
    assert main(["init", "--config", str(config)]) == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f"WEBHOUSE_CONFIG={config}" in capsys.readouterr().out
    monkeypatch.setenv("WEBHOUSE_CONFIG", str(config))
    settings = load_settings()
    assert default_secrets(settings) == []
    for service in ("collector", "worker", "triggers", "sink"):
        refuse_default_secrets(settings, service, "0.0.0.0")
    assert list(settings.collector.write_keys.values()) == ["default"]


def test_init_makes_different_secrets_each_time_and_never_overwrites(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    assert main(["init", "--config", str(first)]) == 0
    assert main(["init", "--config", str(second)]) == 0
    a, b = tomllib.loads(first.read_text()), tomllib.loads(second.read_text())
    assert a["webhouse"]["pii_hmac_secret"] != b["webhouse"]["pii_hmac_secret"]
    assert a["collector"]["write_keys"] != b["collector"]["write_keys"]
    before = first.read_text()
    assert main(["init", "--config", str(first)]) == 2
    assert first.read_text() == before


def test_the_env_file_holds_the_same_secrets_as_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """docker compose passes env_file lines verbatim as variables: they must load as settings."""
    fresh = FreshSecrets.generate()
    config = tmp_path / "webhouse.toml"
    config.write_text(fresh.toml())
    monkeypatch.setenv("WEBHOUSE_CONFIG", str(config))
    from_toml = load_settings()
    monkeypatch.delenv("WEBHOUSE_CONFIG")
    for line in fresh.env().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    from_env = load_settings()
    for settings in (from_toml, from_env):
        assert settings.collector.write_keys == {fresh.write_key: "default"}
        assert settings.collector.email.link_secrets == [fresh.link_secret]
        assert settings.triggers.webhook_secret == fresh.webhook_secret
        assert settings.webhouse.pii_hmac_secret == fresh.pii_hmac_secret


def test_the_collector_command_refuses_to_bind_everywhere_with_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["collector", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start the collector on 0.0.0.0" in err
    assert "WEBHOUSE_COLLECTOR__WRITE_KEYS" in err


def test_the_sink_command_refuses_reachable_metrics_with_the_default_pii_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOUSE_METRICS__HOST", "0.0.0.0")
    assert main(["sink", "--metrics-port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "refusing to start the sink on 0.0.0.0" in err
    assert "webhouse.pii_hmac_secret (env WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET)" in err


@pytest.mark.parametrize("command", [["worker"], ["triggers", "run"]])
def test_worker_and_triggers_refuse_reachable_metrics_with_the_default_webhook_secret(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any broker is contacted (there is none here)."""
    monkeypatch.setenv("WEBHOUSE_METRICS__HOST", "0.0.0.0")
    monkeypatch.setenv("WEBHOUSE_METRICS__PORT", str(free_port()))
    monkeypatch.setenv("WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"refusing to start the {command[0]} on 0.0.0.0" in err
    assert "triggers.webhook_secret (env WEBHOUSE_TRIGGERS__WEBHOOK_SECRET)" in err


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_metrics_bind_metrics_host_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 is loopback on Linux but another address: served there, refused on 127.0.0.1."""
    from prometheus_client import CollectorRegistry, Counter

    port = free_port()
    monkeypatch.setenv("WEBHOUSE_METRICS__HOST", "127.0.0.2")
    monkeypatch.setenv("WEBHOUSE_METRICS__PORT", str(port))
    registry = CollectorRegistry()
    Counter("webhouse_probe", "A probe.", registry=registry).inc()
    url = serve_metrics(load_settings(), "sink", registry)
    assert url == f"http://127.0.0.2:{port}/metrics"
    assert "webhouse_probe_total 1.0" in _get(url)
    with pytest.raises(urllib.error.URLError):
        _get(f"http://127.0.0.1:{port}/metrics")


def test_port_zero_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    monkeypatch.setenv("WEBHOUSE_METRICS__PORT", "0")
    monkeypatch.setenv("WEBHOUSE_METRICS__HOST", "0.0.0.0")
    assert serve_metrics(load_settings(), "sink", CollectorRegistry()) is None


def test_the_config_file_mode_is_private_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert main(["init", "--config", str(tmp_path / "w.toml")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.toml").stat().st_mode) == 0o600
