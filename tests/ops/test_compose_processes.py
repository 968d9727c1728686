"""What docker-compose.yml starts, started here: the same commands and environment as the
file names, against this machine's PostgreSQL and Redis (no Docker engine is needed).

Only the addresses differ (the compose network's ``postgres`` and ``redis``,
the data directory and the ports); each swap is asserted first, so the file
cannot drift from what runs here. The services' own health checks are run
as written, then one turn goes through the API, a worker and Flower, and the
logs and metrics are checked.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import PG_URL, TEST_REDIS_URL
from tests.fakellm import FakeLLM, Reply
from tests.helpers import MODELS
from tests.ops.compose import (
    COMPOSE_DATABASE_URL,
    COMPOSE_REDIS_URL,
    environment,
    healthcheck_command,
    interpolate,
    load,
    replace_port,
)
from tests.processes import free_port

pytestmark = pytest.mark.slow

COMPOSE_DB = "bobbin_compose_test"
PROVIDER_KEY = "sk-compose-provider-key-0123456789"
VENV_BIN = str(Path(sys.executable).parent)
PORTS = {"api": 8000, "worker": 9808, "flower": 5555}


class Service:
    """One compose service as a local process, its output in ``log``."""

    def __init__(
        self, name: str, spec: dict[str, Any], env: dict[str, str], port: int, log: Path
    ) -> None:
        self.name, self.spec, self.env, self.port, self.log = name, spec, env, port, log
        self.command = replace_port(spec["command"], PORTS[name], self.port)
        self._out = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.command,
            env=env,
            cwd=env["BOBBIN_DATA_DIR"],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthy(self) -> bool:
        """The compose health check, run as the file writes it."""
        argv = replace_port(healthcheck_command(self.spec), PORTS[self.name], self.port)
        result = subprocess.run(argv, env=self.env, capture_output=True, timeout=10)
        return result.returncode == 0

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output[-3000:]}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not healthy:\n{self.output[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def compose_db() -> str:
    """A fresh PostgreSQL database for the compose processes."""
    server = PG_URL.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {COMPOSE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {COMPOSE_DB}")
    return f"{server}/{COMPOSE_DB}"


@pytest.fixture
def required() -> dict[str, str]:
    """The variables the compose file insists on, as an operator would set them."""
    return {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(12),
        "BOBBIN_SECRET_KEY": secrets.token_urlsafe(32),
        "BOBBIN_BOOTSTRAP_API_KEY": "bk-" + secrets.token_urlsafe(24),
        "FLOWER_BASIC_AUTH": "admin:" + secrets.token_urlsafe(12),
    }


@pytest.fixture
def start(
    compose_db: str, required: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[str], Service]]:
    services = interpolate(load(), required)["services"]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    started: list[Service] = []

    def start_service(name: str) -> Service:
        env = localize(environment(services[name]), compose_db, data_dir)
        port = free_port()
        if name == "worker":
            assert env["BOBBIN_WORKER_METRICS_PORT"] == str(PORTS["worker"])
            env["BOBBIN_WORKER_METRICS_PORT"] = str(port)
        service = Service(name, services[name], env, port, tmp_path / f"{name}.log")
        started.append(service)
        return service

    yield start_service
    for service in reversed(started):
        service.stop()


def localize(env: dict[str, str], database_url: str, data_dir: Path) -> dict[str, str]:
    """The compose environment with this machine's addresses; nothing else changes."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOBBIN_", "FLOWER_"))}
    local = {**base, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    if "BOBBIN_DATABASE_URL" in env:
        assert COMPOSE_DATABASE_URL.match(env["BOBBIN_DATABASE_URL"])
        local["BOBBIN_DATABASE_URL"] = database_url
    assert env["BOBBIN_REDIS_URL"] == COMPOSE_REDIS_URL
    local["BOBBIN_REDIS_URL"] = TEST_REDIS_URL
    local["BOBBIN_DATA_DIR"] = str(data_dir)
    return local


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == name and all(f'{k}="{v}"' in sample for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


def test_compose_services_run_a_turn_with_json_logs_and_metrics(
    start: Callable[[str], Service], required: dict[str, str], llm: FakeLLM
) -> None:
    api, worker, flower = start("api"), start("worker"), start("flower")
    for service in (api, worker, flower):
        service.wait_healthy()

    # Task events are off by default (shared/queue.py); Flower turns them on in the
    # worker at run time (its enable_events broadcast, every 5 s): kicks sent before
    # that would never reach Flower.
    wait_for_output(worker, "Events of group {task} enabled by remote")
    url = f"http://127.0.0.1:{api.port}"
    key = required["BOBBIN_BOOTSTRAP_API_KEY"]
    assert httpx.get(f"{url}/readyz").json()["status"] == "ok"
    answer = "compose says hello"
    llm.script(Reply(text=answer), match="hello")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        agent_id, turn = run_one_turn(http, llm)
        assert turn["status"] == "completed" and turn["output"] == answer
        api_metrics = http.get("/metrics").text

    turn_lines = [line for line in json_lines(worker.output) if line.get("turn_id") == turn["id"]]
    assert turn_lines, worker.output[-3000:]
    for line in turn_lines:
        assert line["agent_id"] == agent_id and line["worker_id"]
    flower_password = required["FLOWER_BASIC_AUTH"].split(":", 1)[1]
    secrets_ = [*required.values(), flower_password, PROVIDER_KEY]
    for service in (api, worker, flower):
        leaked = [s for s in secrets_ if s in service.output]
        assert not leaked, f"{service.name}'s log shows a secret"

    assert metric(api_metrics, "bobbin_api_requests_total", method="POST", status="202") >= 1
    assert metric(api_metrics, "bobbin_queue_depth") == 0
    worker_metrics = httpx.get(f"http://127.0.0.1:{worker.port}/metrics").text
    assert metric(worker_metrics, "bobbin_turns_total", status="completed") == 1
    model = {"provider": "anthropic", "model": MODELS["anthropic"]}
    assert metric(worker_metrics, "bobbin_time_to_first_token_seconds_count", **model) == 1
    assert metric(worker_metrics, "bobbin_tokens_total", direction="output", **model) > 0

    auth = ("admin", flower_password)
    tasks = wait_for_flower_task(f"http://127.0.0.1:{flower.port}", auth, agent_id)
    assert tasks, "Flower saw no kick for the agent"


def run_one_turn(http: httpx.Client, llm: FakeLLM) -> tuple[str, dict[str, Any]]:
    instance = http.post(
        "/v1/provider-instances",
        json={
            "name": "fake anthropic",
            "catalog_provider_id": "anthropic",
            "base_url": llm.base_url,
            "credential": {"api_key": PROVIDER_KEY},
        },
    )
    assert instance.status_code == 201, instance.text
    configuration = {"provider_instance_id": instance.json()["id"], "model_id": MODELS["anthropic"]}
    project = http.post("/v1/projects", json={"name": "compose", "configuration": configuration})
    assert project.status_code == 201, project.text
    session = http.post(f"/v1/projects/{project.json()['id']}/sessions", json={"name": "compose"})
    assert session.status_code == 201, session.text
    agent_id = session.json()["coordinator_agent_id"]
    sent = http.post(f"/v1/agents/{agent_id}/messages", json={"content": "hello compose"})
    assert sent.status_code == 202, sent.text
    turn_id = sent.json()["turn"]["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        turn = http.get(f"/v1/turns/{turn_id}", params={"wait_s": 5}).json()
        if turn["status"] not in ("queued", "running"):
            return agent_id, dict(turn)
    raise TimeoutError(f"turn {turn_id} did not finish")


def wait_for_output(service: Service, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in service.output:
        assert time.monotonic() < deadline, f"{service.name} never logged {text!r}"
        time.sleep(0.2)


def wait_for_flower_task(url: str, auth: tuple[str, str], agent_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        tasks = httpx.get(f"{url}/api/tasks", auth=auth, timeout=5).json()
        kicks = [t for t in tasks.values() if t["name"] == "bobbin.kick" and agent_id in t["args"]]
        if kicks:
            return kicks
        time.sleep(0.5)
    return []


def test_compose_worker_stops_cleanly_on_sigterm(start: Callable[[str], Service]) -> None:
    worker = start("worker")
    worker.wait_healthy()
    worker.stop()
    assert worker.proc.returncode == 0, worker.output[-3000:]
