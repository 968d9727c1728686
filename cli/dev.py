"""``bobbin dev``: the API and one worker on the embedded defaults, with a conversation shown.

Steps: bind 127.0.0.1:PORT (so a port in use stops everything before it
starts); make sure Redis answers (start a ``redis-server`` without
persistence when there is none); migrate; make the ``dev`` API key when no key
exists; upsert provider instances from the environment, or start the offline
model when the environment names none; configure the ``dev`` project; start a
worker process; serve the API; once ``/readyz`` answers, greet the dev
project's coordinator agent and print its streamed answer. Ctrl-C stops the
API, then every child this command started (worker, offline model, Redis).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import typer
from sqlmodel import Session, select

from cli import offline
from cli.api_client import ApiClient, dev_key_path, write_key_file
from cli.chat import DEV_PROJECT, new_dev_agent
from cli.children import Child, shared_with_children
from cli.common import (
    CommandFailed,
    bind_socket,
    database,
    describe,
    fail,
    is_loopback,
    load_settings,
    one_line_errors,
    redis_answers,
    safe_url,
)
from cli.conversation import converse
from cli.environment import InstanceSpec, env_instances
from cli.providers import list_models, save_instance
from cli.serve import run_api
from shared.apikeys import count_active, create_key, verify_key
from shared.crypto import Cipher
from shared.db import Database
from shared.models import Project, ProviderInstance
from shared.providers.catalog import load_catalog
from shared.sessions import create_project, update_project
from shared.settings import Settings

HOST = "127.0.0.1"
GREETING = "Hello! Who are you? Please answer in one short sentence."
WORKER_READY = b" ready."
ENV_HINT = "set ANTHROPIC_API_KEY, OPENAI_API_KEY or BOBBIN_LOCAL_BASE_URL"
TOOLS_NEXT_STEP = "What files are in my workspace?"
OFFLINE_NEXT_STEP = "Tell me a short story about a lighthouse."


@dataclass(frozen=True)
class Target:
    """The provider and model the dev project talks to."""

    configuration: dict[str, str]
    offline: bool = False

    @property
    def label(self) -> str:
        return f"{self.configuration['provider_instance_id']} / {self.configuration['model_id']}"


@one_line_errors
def dev(
    port: int = typer.Option(8000, "--port", help="API port on 127.0.0.1."),
    concurrency: int = typer.Option(
        8, "--concurrency", min=1, help="Turns in flight in the worker."
    ),
    no_demo: bool = typer.Option(False, "--no-demo", help="Skip the greeting conversation."),
) -> None:
    """Run the API and one worker on 127.0.0.1 with all they need, and show a conversation."""
    settings = load_settings()
    logs = settings.data_dir / "logs"
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as children:
            children.enter_context(hold_data_dir(settings.data_dir))
            sock = bind_socket(HOST, port)
            children.callback(sock.close)
            ensure_redis(settings, children, logs)
            with database(settings, loopback=True) as (db, cipher):
                key, key_source = ensure_dev_key(db, settings)
                target = choose_target(settings, db, cipher, children, logs)
                ensure_dev_project(db, target.configuration)
            start_worker(settings, concurrency, children, logs)
            url = f"http://{HOST}:{port}"
            threading.Thread(
                target=_after_ready,
                args=(url, key, key_source, target, no_demo),
                daemon=True,
            ).start()
            say(f"API starting on {url} (Ctrl-C stops everything)")
            run_api(settings, sock, auth=True, loopback=True, log_level="warning")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("stopped")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data directory for this ``bobbin dev`` alone: a second one on it would
    point ``env-local`` at its own model and write the same logs. The lock (``flock``
    on ``dev.pid``, which names the holder) is shared with every child, so it lasts
    until the last of them has exited, however this process ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "dev.pid", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if holder.isdigit() and not _running(int(holder)):
                fail(
                    f"the processes of a `bobbin dev` that ended (PID {holder}) are still "
                    f"stopping on {data_dir.absolute()}: try again in a moment"
                )
            fail(
                f"another `bobbin dev` (PID {holder}) is running on {data_dir.absolute()}: "
                "stop it first, or give this one its own BOBBIN_DATA_DIR"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with shared_with_children(fd):
            yield
    finally:
        os.close(fd)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running all the same
        pass
    return True


def say(line: str) -> None:
    typer.echo(f"[bobbin dev] {line}")


# -- Redis ------------------------------------------------------------------------


def ensure_redis(settings: Settings, children: ExitStack, logs: Path) -> None:
    """Redis answers, or a local ``redis-server`` without persistence is started for this run."""
    if redis_answers(settings.redis_url, timeout_s=1.0):
        return
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    binary = shutil.which("redis-server")
    if binary is None or not is_loopback(host):
        fail(
            f"Redis does not answer at {safe_url(settings.redis_url)}: install it "
            "(apt-get install redis-server, brew install redis, or "
            "docker run -p 6379:6379 redis:7) or set BOBBIN_REDIS_URL"
        )
    command = [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = Child("redis-server", command, logs / "redis.log").start()
    children.callback(redis.stop)
    redis.wait_until(lambda: redis_answers(settings.redis_url, 0.5), 10, "answering")
    say(f"started redis-server on {host}:{port} without persistence (stopped with bobbin dev)")


# -- API key ----------------------------------------------------------------------


def ensure_dev_key(db: Database, settings: Settings) -> tuple[str | None, str]:
    """The key the demo uses (BOBBIN_API_KEY, the kept dev key, or a new ``dev`` key) and
    where a user finds it."""
    path = dev_key_path(settings)
    sources = []
    if settings.api_key is not None:
        sources.append(("BOBBIN_API_KEY", settings.api_key.get_secret_value()))
    if path.exists():
        sources.append((str(path), path.read_text().strip()))
    for source, candidate in sources:
        if candidate and db.read_sync(verify_key, candidate) is not None:
            where = f"the one in {source}"
            say(f"API key: {where}")
            return candidate, where
    if db.read_sync(count_active) > 0:
        say(
            f"API keys exist but none is known here ({path} is missing or revoked): "
            "set BOBBIN_API_KEY to run the demo and `bobbin chat`"
        )
        return None, "one of yours: none is known here"
    row, plaintext = db.run_sync(create_key, "dev")
    write_key_file(path, plaintext)
    say(f"created API key 'dev' ({row.id}), kept in {path} (mode 0600):")
    typer.echo(plaintext)
    return plaintext, f"the one in {path}"


# -- provider ---------------------------------------------------------------------


def choose_target(
    settings: Settings, db: Database, cipher: Cipher, children: ExitStack, logs: Path
) -> Target:
    """Upsert the environment's instances and pick the first; else start the offline model."""
    specs = env_instances()
    for spec in specs:
        view = save_instance(db, cipher, spec)
        say(f"provider instance {view.id} upserted from the environment")
    if specs:
        first = specs[0]
        assert first.id is not None  # the environment's instances have fixed ids
        return Target({"provider_instance_id": first.id, "model_id": _model(db, cipher, first)})
    if reason := offline.missing_reason():
        fail(f"no provider in the environment ({ENV_HINT}) and {reason}")
    model = offline.OfflineModel(logs / "offline-model.log").start()
    children.callback(model.stop)
    took = model.wait_ready()
    offline.register(db, model.base_url)
    children.callback(_unregister_offline, settings, model.base_url)
    say(f"offline model ready in {took:.1f} s at {model.base_url} ({offline.INSTANCE_ID})")
    say(
        "NOTE: no provider key in the environment, so the OFFLINE tiny model "
        f"({offline.MODEL_ID}, llama.cpp) answers. It only shows the pipeline working; "
        f"for a real model {ENV_HINT} and run `bobbin dev` again."
    )
    return Target(offline.configuration(), offline=True)


def _unregister_offline(settings: Settings, base_url: str) -> None:
    """Leave no ``env-local`` pointing at the model this command is stopping."""
    with database(settings, loopback=True) as (db, _):
        offline.unregister(db, base_url)


def _model(db: Database, cipher: Cipher, spec: InstanceSpec) -> str:
    """The catalog's first model; for a local server, the first model it serves."""
    if spec.catalog_provider_id == "openai-compatible":
        assert spec.id is not None
        served = asyncio.run(list_models(db, cipher, spec.id))
        if isinstance(served, list) and served:
            return served[0]
        detail = f"{served.code}: {served.message}" if not isinstance(served, list) else "no model"
        fail(f"BOBBIN_LOCAL_BASE_URL ({spec.base_url}) cannot be used: {detail}")
    catalog = load_catalog().provider(spec.catalog_provider_id)
    assert catalog is not None and catalog.models
    return catalog.models[0].id


# -- dev project ------------------------------------------------------------------


def ensure_dev_project(db: Database, configuration: dict[str, str]) -> str:
    """The ``dev`` project, pointed at ``configuration`` unless it uses an instance of its own."""

    def write(s: Session) -> str:
        project = s.exec(
            select(Project).where(Project.name == DEV_PROJECT).order_by(Project.id)
        ).first()
        if project is None:
            return create_project(s, DEV_PROJECT, None, configuration).id
        current = project.configuration.get("provider_instance_id")
        managed = (
            not current or current.startswith("env-") or s.get(ProviderInstance, current) is None
        )
        if managed and {k: project.configuration.get(k) for k in configuration} != configuration:
            update_project(s, project.id, {}, configuration)
        return project.id

    return db.run_sync(write)


# -- worker -----------------------------------------------------------------------


def start_worker(settings: Settings, concurrency: int, children: ExitStack, logs: Path) -> None:
    env = {**os.environ, "BOBBIN_WORKER_CONCURRENCY": str(concurrency), "PYTHONUNBUFFERED": "1"}
    worker = Child(
        "the worker", [sys.executable, "-m", "workers.app"], logs / "worker.log", env=env
    ).start()
    children.callback(worker.stop, settings.shutdown_timeout_s + 5)
    took = worker.wait_until(lambda: worker.log_contains(WORKER_READY), 60, "ready")
    say(f"worker ready in {took:.1f} s (pid {worker.pid}, concurrency {concurrency})")


# -- once the API answers ---------------------------------------------------------


def _after_ready(url: str, key: str | None, key_source: str, target: Target, no_demo: bool) -> None:
    try:
        took = wait_ready(url)
        say(f"API ready in {took:.1f} s")
        agent_id = None if no_demo or key is None else demo(url, key, target)
        print_next_steps(url, agent_id, key_source, target)
    except CommandFailed as exc:
        say(f"demo failed: {exc}")
    except Exception as exc:  # the server keeps running; say why the demo stopped
        say(f"demo failed: {describe(exc) or f'{type(exc).__name__}: {exc}'}")


def wait_ready(url: str, timeout_s: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    fail(f"{url}/readyz did not answer 200 within {timeout_s:.0f} s")


def demo(url: str, key: str, target: Target) -> str:
    """Greet the coordinator of a new dev session and print its streamed answer."""
    with ApiClient(url, key) as api:
        agent_id = new_dev_agent(api)
        say(f"demo: new session in project '{DEV_PROJECT}' ({target.label}), agent {agent_id}")
        typer.echo(f"you> {GREETING}")
        typer.echo("agent> ", nl=False)
        started = time.monotonic()
        code = converse(api, agent_id, GREETING)
        outcome = "completed" if code == 0 else "did not complete"
        say(f"the turn {outcome} in {time.monotonic() - started:.1f} s")
        if target.offline:
            say(f"(that was the offline tiny model: {ENV_HINT} for a real one)")
    return agent_id


def print_next_steps(url: str, agent_id: str | None, key_source: str, target: Target) -> None:
    prefix = "" if url == "http://127.0.0.1:8000" else f"BOBBIN_API_URL={url} "
    agent = agent_id or "new"
    # The offline model cannot use tools: ask it for words, not for work on files.
    ask = OFFLINE_NEXT_STEP if target.offline else TOOLS_NEXT_STEP
    typer.echo(
        f"\nBobbin is running at {url}\n"
        f'  continue:    {prefix}bobbin chat {agent} "{ask}"\n'
        f"  web console: {url}/  (it asks for an API key: {key_source})\n"
        f"  API docs:    {url}/docs\n"
        "Ctrl-C stops the API, the worker and whatever bobbin dev started."
    )
