"""A small synchronous client of Bobbin's HTTP API for the CLI (``bobbin chat``, the dev demo).

The key travels only in the ``Authorization`` header, never in a URL. API
errors become ``CommandFailed`` with the API's code and message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import httpx

from cli.common import fail
from shared.settings import Settings

DEV_KEY_FILE = "dev-api-key"
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the API sends keep-alives every 15 s


def dev_key_path(settings: Settings) -> Path:
    return settings.data_dir / DEV_KEY_FILE


def resolve_api_key(settings: Settings) -> str:
    """``BOBBIN_API_KEY``, else the key ``bobbin dev`` keeps in ``./data/dev-api-key``."""
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return settings.api_key.get_secret_value()
    path = dev_key_path(settings)
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if not key:
        fail(f"no API key: set BOBBIN_API_KEY, or run `bobbin dev` (it keeps one in {path})")
    return key


def write_key_file(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key + "\n")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class ApiClient:
    def __init__(self, base_url: str, api_key: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded answer; raises ApiError for an error answer, fails when unreachable."""
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            self._unreachable(exc)
        if response.status_code >= 400:
            raise _api_error(response)
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self._checked("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._checked("POST", path, body)

    def _checked(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            return self.call(method, path, body)
        except ApiError as exc:
            fail(f"the API answered {exc.status} {exc.code}: {exc.message}")

    def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list route, following ``next_cursor``."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            suffix = f"?limit=1000&cursor={cursor}" if cursor else "?limit=1000"
            page = self.get(path + suffix)
            items += next(v for k, v in page.items() if isinstance(v, list))
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    @contextmanager
    def stream(self, path: str, last_event_id: str | None = None) -> Iterator[httpx.Response]:
        """An open SSE response (headers received); fails on an error answer."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        request = self._client.build_request("GET", path, headers=headers, timeout=STREAM_TIMEOUT)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            self._unreachable(exc)
        try:
            if response.status_code >= 400:
                response.read()
                error = _api_error(response)
                fail(f"the API answered {error.status} {error.code}: {error.message}")
            yield response
        finally:
            response.close()

    def _unreachable(self, exc: httpx.HTTPError) -> NoReturn:
        fail(
            f"the API at {self.base_url} does not answer ({type(exc).__name__}): start it with "
            "`bobbin dev` or `bobbin serve`, or set BOBBIN_API_URL"
        )


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:200] or "no detail")
