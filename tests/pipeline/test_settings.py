from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import describe_defaults, load_settings
from tools.cli import main


def test_defaults_without_environment() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.worker.session.inactivity_gap_s == 1800


def test_environment_overrides_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS", "10.1.2.3:9999")
    monkeypatch.setenv("WEBHOUSE_WORKER__SESSION__INACTIVITY_GAP_S", "600")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "10.1.2.3:9999"
    assert settings.worker.session.inactivity_gap_s == 600


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "webhouse.toml"
    config.write_text('[kafka]\ntopic_prefix = "shop"\ndefault_partitions = 8\n[collector]\nport = 9000\n')
    monkeypatch.setenv("WEBHOUSE_CONFIG", str(config))
    monkeypatch.setenv("WEBHOUSE_COLLECTOR__PORT", "9001")
    settings = load_settings()
    assert settings.kafka.topic_prefix == "shop"
    assert settings.kafka.default_partitions == 8
    assert settings.collector.port == 9001


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("WEBHOUSE_KAFKA__DEFAULT_PARTITIONS", "0", "kafka.default_partitions"),
        ("WEBHOUSE_COLLECTOR__PORT", "http", "collector.port"),
        ("WEBHOUSE_LOG_LEVEL", "chatty", "log_level"),
    ],
)
def test_bad_value_is_rejected_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert named in str(info.value) and env in str(info.value)


def test_unknown_key_in_file_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "webhouse.toml"
    config.write_text("[kafka]\nbootstrap = 'typo'\n")
    monkeypatch.setenv("WEBHOUSE_CONFIG", str(config))
    with pytest.raises(SettingsError, match=r"kafka\.bootstrap"):
        load_settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEBHOUSE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="no such file"):
        load_settings()


def test_cli_reports_bad_settings_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOUSE_KAFKA__DEFAULT_PARTITIONS", "-1")
    assert main(["config"]) == 2
    assert "kafka.default_partitions" in capsys.readouterr().err


def test_every_default_is_documented_once() -> None:
    rows = describe_defaults()
    keys = [key for key, *_ in rows]
    assert len(keys) == len(set(keys))
    assert {"kafka.bootstrap_servers", "worker.session.inactivity_gap_s"} <= set(keys)
