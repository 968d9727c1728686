"""``bobbin chat`` against a real API process and worker, with the fake LLM as the model."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.common import free_port
from shared.apikeys import create_key
from shared.db import Database
from shared.settings import Settings
from tests.fakellm import FakeLLM, Reply
from tests.integration.cli.conftest import Bobbin
from tests.processes import ROOT, WorkerProcess, env_for


@pytest.fixture
def api_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """``bobbin serve`` and a worker process, started side by side."""
    worker = WorkerProcess(settings, tmp_path / "worker.log", concurrency=4)
    port = free_port()
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env_for(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            worker.wait_ready()
            _wait_ready(url, api, log_path)
            yield url
        finally:
            api.terminate()
            worker.kill()  # no grace needed: every turn of the test has ended
            worker.stop()
            api.wait(15)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(log_path.read_text()[-3000:])


@pytest.fixture
def chat(bobbin: Bobbin, db: Database, api_url: str) -> Bobbin:
    _, key = db.run_sync(create_key, "chat-test")

    def run(*args: str, **env: str | None) -> object:
        return bobbin("chat", *args, BOBBIN_API_URL=api_url, BOBBIN_API_KEY=key, **env)

    return run  # type: ignore[return-value]


def test_chat_new_makes_the_dev_project_on_env_local_and_streams_the_answer(
    bobbin: Bobbin, chat: Bobbin, llm: FakeLLM
) -> None:
    added = bobbin("providers", "add", "--from-env", BOBBIN_LOCAL_BASE_URL=llm.base_url + "/v1")
    assert added.exit_code == 0, added.output
    llm.script(Reply(text="hello from the fake model"))

    result = chat("new", "hi there")

    assert result.exit_code == 0, result.output
    assert "hello from the fake model" in result.stdout
    agent_id = result.stdout.split()[1]
    assert agent_id.endswith(".1")
    assert llm.requests[-1].body["model"] == "fake-large"  # the first model env-local serves

    llm.script(Reply(text="second answer"))
    again = chat(agent_id, "and again")

    assert again.exit_code == 0, again.output
    assert "second answer" in again.stdout


def test_chat_denies_an_approval_when_stdin_is_not_a_terminal(
    bobbin: Bobbin, chat: Bobbin, llm: FakeLLM
) -> None:
    bobbin("providers", "add", "--from-env", BOBBIN_LOCAL_BASE_URL=llm.base_url + "/v1")
    llm.script(Reply(tool_calls=[("bash", {"command": "touch pwned"})]), match="run it")
    llm.script(Reply(text="understood, not running it"))

    result = chat("new", "please run it")

    assert result.exit_code == 0, result.output
    assert "bash" in result.stdout and "denying" in result.stdout
    assert "← denied" in result.stdout
    assert "understood, not running it" in result.stdout


def test_chat_exits_1_with_the_code_when_the_turn_fails(
    bobbin: Bobbin, chat: Bobbin, llm: FakeLLM
) -> None:
    bobbin("providers", "add", "--from-env", BOBBIN_LOCAL_BASE_URL=llm.base_url + "/v1")
    llm.script(Reply(error_status=401), match="fail", times=None)

    result = chat("new", "please fail")

    assert result.exit_code == 1
    assert "turn failed: provider_auth_failed" in result.stdout


def test_chat_says_plainly_when_the_agents_model_cannot_use_tools(
    bobbin: Bobbin, chat: Bobbin, llm: FakeLLM, db: Database, api_url: str
) -> None:
    bobbin("providers", "add", "--from-env", BOBBIN_LOCAL_BASE_URL=llm.base_url + "/v1")
    first = chat("new", "hello")
    agent_id = first.stdout.split()[1]
    _, key = db.run_sync(create_key, "patch")
    patched = httpx.patch(
        f"{api_url}/v1/agents/{agent_id}",
        json={"provider_instance_id": "env-local", "model_id": "gemma-3-270m"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert patched.status_code == 200, patched.text

    result = chat(agent_id, "list my files")

    assert result.exit_code == 0, result.output
    assert (
        "note: openai-compatible model gemma-3-270m cannot use tools, so it answers without them."
        in result.stdout
    )
