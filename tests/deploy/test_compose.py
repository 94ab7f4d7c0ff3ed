"""docker compose is not run here (no Docker engine); its file is checked for what it promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.safe_defaults import SECRET_KEYS, env_name

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: s for name, s in services.items() if "deploy/Dockerfile" in str(s.get("build", ""))}


def test_every_webhouse_service_reads_its_secrets_from_the_env_file() -> None:
    services = _services()
    assert {"collector", "worker", "triggers", "sink"} <= set(services)
    secret_vars = {env_name(key) for key in SECRET_KEYS}
    for name, service in services.items():
        assert service.get("env_file") == ["webhouse.env"], name
        assert not secret_vars & set(service.get("environment") or {}), f"{name} sets a secret inline"


def test_services_are_scrapeable_from_other_containers() -> None:
    services = _services()
    assert services["collector"]["environment"]["WEBHOUSE_COLLECTOR__HOST"] == "0.0.0.0"
    for name in ("worker", "triggers", "sink"):
        assert services[name]["environment"]["WEBHOUSE_METRICS__HOST"] == "0.0.0.0"


def test_the_services_are_restarted_when_they_exit() -> None:
    """A service that finds itself stuck exits non-zero (pipeline/health.py) for this restart."""
    services = _services()
    for name in ("collector", "worker", "triggers", "sink"):
        assert services[name]["restart"] == "unless-stopped", name


def test_the_worker_and_the_triggers_keep_their_state_stores_on_volumes() -> None:
    """On disk by default (worker.state_store): on a volume, a recreated container resumes them."""
    for name in ("worker", "triggers"):
        service = _services()[name]
        state = service["environment"]["WEBHOUSE_WORKER__DATA_DIR"]
        assert any(volume.endswith(f":{state}") for volume in service["volumes"]), name


def test_the_trigger_stages_run_in_a_process_of_their_own() -> None:
    """Not in the worker as well: the two would run the same stages in the same consumer groups."""
    services = _services()
    assert services["worker"]["environment"]["WEBHOUSE_WORKER__EXTENSIONS"] == "[]"
    assert services["triggers"]["command"] == ["triggers", "run"]


def test_the_stream_services_allocate_through_jemalloc() -> None:
    """Under pymalloc the trigger process's resident set grew with arenas it could not return
    (docs/performance.md, "The lead bounded in the deployed layout"); the image links jemalloc at
    the path preloaded here."""
    services = _services()
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    for name in ("worker", "triggers"):
        env = services[name]["environment"]
        assert env["PYTHONMALLOC"] == "malloc", name
        assert env["LD_PRELOAD"] == "/usr/local/lib/libjemalloc.so.2", name
        assert env["LD_PRELOAD"] in dockerfile and "libjemalloc2" in dockerfile
