"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

The structure is checked here; ``docker compose config`` (or the standalone
``docker-compose``) validates the file against the Compose schema where a
client that can is installed. ``test_compose_processes.py`` runs what it names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.ops.compose import (
    COMPOSE_DATABASE_URL,
    COMPOSE_FILE,
    COMPOSE_REDIS_URL,
    MissingVariable,
    environment,
    interpolate,
    load,
)
from tests.processes import ROOT

REQUIRED = {
    "POSTGRES_PASSWORD": "compose-password",
    "BOBBIN_SECRET_KEY": "compose-secret-key-that-is-long-enough-0123",
    "BOBBIN_BOOTSTRAP_API_KEY": "compose-bootstrap-key-0123456789",
    "FLOWER_BASIC_AUTH": "admin:compose-flower-password",
}
SERVICES = {"redis", "postgres", "api", "worker", "flower"}
BOBBIN_SERVICES = ("api", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = interpolate(load(), REQUIRED)
    return data


def test_compose_names_every_service_with_a_healthcheck(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert check.get("interval") and check.get("retries"), name


def test_api_and_worker_run_the_bobbin_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["command"] == ["bobbin", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert services["worker"]["command"] == ["bobbin", "worker", "--concurrency", "100"]
    flower = " ".join(services["flower"]["command"])
    assert 'celery --broker "$BOBBIN_REDIS_URL" flower' in flower


def test_worker_scales_with_compose_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "a fixed name stops --scale worker=N"
    assert "ports" not in worker, "a published port stops --scale worker=N"
    assert worker.get("init") is True, "tini must reap the processes tools start"


def test_worker_stop_grace_exceeds_its_shutdown_timeout(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    grace_s = int(re.fullmatch(r"(\d+)s", worker["stop_grace_period"]).group(1))  # type: ignore[union-attr]
    assert float(environment(worker)["BOBBIN_SHUTDOWN_TIMEOUT_S"]) + 5 <= grace_s


def test_bobbin_services_share_configuration_by_environment(compose: dict[str, Any]) -> None:
    envs = {name: environment(compose["services"][name]) for name in BOBBIN_SERVICES}
    for name, env in envs.items():
        assert COMPOSE_DATABASE_URL.match(env["BOBBIN_DATABASE_URL"]), name
        assert env["BOBBIN_REDIS_URL"] == COMPOSE_REDIS_URL, name
        assert env["BOBBIN_SECRET_KEY"] == REQUIRED["BOBBIN_SECRET_KEY"], name
        assert env["BOBBIN_LOG_FORMAT"] == "json", name
    assert envs["api"]["BOBBIN_BOOTSTRAP_API_KEY"] == REQUIRED["BOBBIN_BOOTSTRAP_API_KEY"]
    assert "BOBBIN_BOOTSTRAP_API_KEY" not in envs["worker"]
    assert envs["worker"]["BOBBIN_WORKER_METRICS_PORT"] == "9808"


def test_worker_is_granted_what_the_tool_sandbox_needs(compose: dict[str, Any]) -> None:
    options = set(compose["services"]["worker"]["security_opt"])

    assert options == {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"}
    assert "privileged" not in compose["services"]["worker"]
    assert "cap_add" not in compose["services"]["worker"]


def test_compose_refuses_to_start_without_its_secrets() -> None:
    raw = load()
    for name in REQUIRED:
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw, {k: v for k, v in REQUIRED.items() if k != name})


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "workspaces:/data/workspaces" in services["worker"]["volumes"]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "workspaces"}


def test_redis_keeps_every_key(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_flower_is_reachable_from_the_host_only_with_a_password(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    assert environment(flower)["FLOWER_BASIC_AUTH"] == REQUIRED["FLOWER_BASIC_AUTH"]


def test_image_is_slim_and_runs_as_a_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages and all("-slim" in stage for stage in stages)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'pip install ".[ops]"' in dockerfile  # the package, with Flower


def test_build_context_leaves_local_state_out() -> None:
    text = (ROOT / ".dockerignore").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "start from nothing, then allow what the build needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "shared", "api", "workers", "cli"}


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True)
        if plugin.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_the_file() -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no Compose client (docker compose or docker-compose) is installed")
    result = subprocess.run(
        [*client, "-f", str(COMPOSE_FILE), "config", "-q"],
        env={"PATH": "/usr/bin:/bin", **REQUIRED},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
