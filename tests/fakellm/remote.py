"""Control a fake LLM server in another process over its ``/_fake/`` routes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.fakellm.replies import Reply

_REPO_ROOT = Path(__file__).resolve().parents[2]


class RemoteFakeLLM:
    """The control surface of ``FakeLLM``, over HTTP (blocking calls, stdlib only)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_fake/{route}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
            return json.loads(response.read())

    def script(self, reply: Reply, match: str | None = None, times: int | None = 1) -> None:
        self._call("POST", "script", {"reply": reply.to_dict(), "match": match, "times": times})

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "config", changes)

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "requests")

    def stats(self) -> dict[str, int]:
        return self._call("GET", "stats")


class FakeLLMProcess:
    """Run ``python -m tests.fakellm`` as a child process: ``with FakeLLMProcess() as llm: ...``.

    ``llm`` is a ``RemoteFakeLLM``; its ``base_url`` is where the server listens.
    """

    def __init__(self, *args: str, port: int = 0) -> None:
        self._argv = [sys.executable, "-m", "tests.fakellm", "--port", str(port), *args]
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> RemoteFakeLLM:
        self._process = subprocess.Popen(
            self._argv, cwd=_REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("fakellm listening on "):
            self.__exit__()
            raise RuntimeError(f"fakellm did not start: {line!r}")
        return RemoteFakeLLM(line.rsplit(" ", 1)[1].strip())

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
