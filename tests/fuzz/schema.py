"""Schemathesis over Bobbin's OpenAPI schema, against a real API process.

Every operation of ``/openapi.json`` gets cases from Schemathesis's positive
(valid per the schema) and negative (invalid) generators, sent authenticated
(a valid key) and not (no key, or a wrong one). Path parameters are drawn at
random or, half the time, set to ids that exist, so the cases reach past the
404. What must hold for every case: no 5xx, every 4xx in the error shape
(``{"error": {"code", "message"}}``), every ``/v1`` case without a valid key
answered 401, and an answer within the timeout.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Err

REQUEST_TIMEOUT_S = 15.0
STREAM_PEEK_BYTES = 1  # an SSE answer is judged by its status line; then it is closed
PRE_AUTH_CODES = {"not_found", "method_not_allowed", "payload_too_large", "invalid_request"}


@dataclass
class FuzzStats:
    cases: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    unshaped_errors: list[str] = field(default_factory=list)
    open_without_key: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    unsendable: int = 0  # cases the HTTP client itself refused to send (e.g. header bytes)
    not_generated: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        return self.server_errors + self.unshaped_errors + self.open_without_key + self.timeouts

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        return "\n".join(
            [
                f"cases sent: {self.cases} over {len(self.by_operation)} operation runs "
                f"in {self.seconds:.0f} s",
                f"answers by status: {statuses}",
                f"5xx answers: {len(self.server_errors)}",
                f"4xx not in the error shape: {len(self.unshaped_errors)}",
                f"/v1 answered without a valid key: {len(self.open_without_key)}",
                f"timeouts: {len(self.timeouts)}",
                f"cases the client could not send: {self.unsendable}",
                f"operations/modes without generated cases: {len(self.not_generated)}",
            ]
        )


@dataclass
class Target:
    base_url: str
    key: str
    known_ids: dict[str, str]  # path parameter name -> an id that exists


class Fuzzer:
    def __init__(self, target: Target, examples: int, rng_seed: int = 0) -> None:
        self.target = target
        self.examples = examples
        self.rng_seed = rng_seed
        self.stats = FuzzStats()
        self.session = requests.Session()
        self.session.trust_env = False  # straight to the loopback API, never via a proxy
        openapi = self.session.get(f"{target.base_url}/openapi.json", timeout=10).json()
        self.schema = schemathesis.openapi.from_dict(openapi)

    def run(self, log: Callable[[str], None] = lambda _: None) -> FuzzStats:
        started = time.monotonic()
        operations = all_operations(self.schema)
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for auth in ("key", "no key", "wrong key"):
                    examples = self.examples if auth == "key" else max(1, self.examples // 4)
                    self._run(operation, mode, auth, examples)
            log(f"{operation.label}: {self.stats.cases} cases so far")
        self.stats.seconds = time.monotonic() - started
        self.session.close()
        return self.stats

    def _run(self, operation: Any, mode: GenerationMode, auth: str, examples: int) -> None:
        strategy = operation.as_strategy(mode)
        known = {
            name: value
            for name, value in self.target.known_ids.items()
            if f"{{{name}}}" in operation.path
        }
        if known:
            strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=known))
        label = f"{operation.label} [{mode.value}, {auth}]"

        @seed(self.rng_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
        @given(strategy)
        def send_each(case: Case) -> None:
            self._send(case, auth, label)

        try:
            send_each()
        except HypothesisException as exc:  # e.g. nothing invalid to generate for this route
            self.stats.not_generated.append(f"{label}: {type(exc).__name__}")

    def _send(self, case: Case, auth: str, label: str) -> None:
        kwargs = case.as_transport_kwargs(base_url=self.target.base_url)
        headers = {k: v for k, v in kwargs.pop("headers").items() if k.lower() != "authorization"}
        if auth == "key":
            headers["Authorization"] = f"Bearer {self.target.key}"
        elif auth == "wrong key":
            headers["Authorization"] = f"Bearer {self.target.key[:-4]}{random.randbytes(2).hex()}"
        what = f"{label}: {kwargs['method']} {kwargs['url'][:300]}"
        try:
            resp = self.session.request(
                **kwargs, headers=headers, timeout=REQUEST_TIMEOUT_S, stream=True
            )
        except requests.Timeout:
            self.stats.timeouts.append(what)
            return
        except (requests.exceptions.InvalidHeader, UnicodeError, ValueError):
            self.stats.unsendable += 1
            return
        with resp:
            body = self._body(resp)
        self.stats.cases += 1
        self.stats.by_status[resp.status_code] += 1
        self.stats.by_operation[label] += 1
        self._judge(resp.status_code, body, auth, kwargs["url"], what)

    @staticmethod
    def _body(resp: requests.Response) -> Any:
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            next(resp.iter_content(STREAM_PEEK_BYTES), None)
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.content[:200]

    def _judge(self, status: int, body: Any, auth: str, url: str, what: str) -> None:
        if status >= 500:
            self.stats.server_errors.append(f"{status} {what} -> {str(body)[:300]}")
        elif status >= 400 and not _error_shaped(body):
            self.stats.unshaped_errors.append(f"{status} {what} -> {str(body)[:300]}")
        path = url.removeprefix(self.target.base_url)
        if auth != "key" and path.startswith("/v1") and status != 401:
            # Refusals that come before authentication reveal nothing: no such route, a body
            # too large or not JSON. Anything else means the route ran without a key.
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            if code not in PRE_AUTH_CODES:
                self.stats.open_without_key.append(f"{status} {what} -> {str(body)[:200]}")


def all_operations(schema: Any) -> list[Any]:
    """Every operation of the schema; raises if Schemathesis cannot read one."""
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the OpenAPI schema has an unreadable operation: {result.err()}")
        operations.append(result.ok())
    return operations


def _error_shaped(body: Any) -> bool:
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    error = body["error"]
    return (
        isinstance(error, dict)
        and set(error) == {"code", "message"}
        and isinstance(error["code"], str)
        and bool(error["code"])
    )
