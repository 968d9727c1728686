"""shared/logging.py: JSON and human lines carry the turn's context and never a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from shared.logging import (
    HumanFormatter,
    JsonFormatter,
    Redactor,
    configure_logging,
    json_logs_from_env,
    log_context,
)

OPERATOR_KEY = "operator-secret-value-123456"


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"boom with Bearer {OPERATOR_KEY}")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("bobbin.test", logging.INFO, __file__, 1, message, args, exc_info)


def json_line(message: str, *args: object, exc: bool = False) -> dict[str, object]:
    line: dict[str, object] = json.loads(
        JsonFormatter(Redactor([OPERATOR_KEY])).format(record(message, *args, exc=exc))
    )
    return line


def test_json_line_has_the_standard_fields() -> None:
    line = json_line("turn %s ended %s", "turn_1", "completed")

    assert line["message"] == "turn turn_1 ended completed"
    assert line["level"] == "INFO" and line["logger"] == "bobbin.test"
    assert str(line["ts"]).endswith("+00:00")
    assert "turn_id" not in line


def test_lines_inside_a_turn_name_the_turn_agent_and_worker() -> None:
    with log_context(agent_id="ses_1.1", worker_id="host:1"), log_context(turn_id="turn_1"):
        line = json_line("working")
    outside = json_line("idle")

    assert (line["turn_id"], line["agent_id"], line["worker_id"]) == ("turn_1", "ses_1.1", "host:1")
    assert "agent_id" not in outside


async def test_tasks_started_inside_a_turn_keep_its_context() -> None:
    async def log_later() -> dict[str, object]:
        await asyncio.sleep(0)
        return json_line("from a child task")

    with log_context(turn_id="turn_2"):
        task = asyncio.create_task(log_later())
    line = await task

    assert line["turn_id"] == "turn_2"


@pytest.mark.parametrize(
    "message",
    [
        "Authorization: Bearer bob_abcdef0123456789",
        "calling with api_key=sk-ant-api03-abcdefghijkl",
        '{"api_key": "plain-key-value-1"}',
        "broker postgresql://bobbin:hunter2hunter2@db:5432/bobbin",
        f"the operator's key {OPERATOR_KEY}",
        "x-api-key: 0123456789abcdef",
    ],
)
def test_credentials_never_reach_a_line(message: str) -> None:
    text = json.dumps(json_line(message))

    assert "[redacted]" in text
    leaks = ("bob_abcdef", "abcdefghijkl", "plain-key", "hunter2", OPERATOR_KEY, "0123456789abc")
    assert not [secret for secret in leaks if secret in text]


def test_tracebacks_are_redacted_too() -> None:
    line = json_line("crashed", exc=True)

    assert "RuntimeError" in str(line["exc"])
    assert OPERATOR_KEY not in json.dumps(line)


def test_human_format_shows_the_context_as_a_suffix() -> None:
    formatter = HumanFormatter(Redactor([]))
    with log_context(turn_id="turn_3"):
        text = formatter.format(record("hello %s", "there"))

    assert text.endswith("bobbin.test: hello there [turn_id=turn_3]")


@pytest.mark.parametrize(("value", "expected"), [("json", True), ("TEXT", False), ("", None)])
def test_log_format_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool | None
) -> None:
    monkeypatch.setenv("BOBBIN_LOG_FORMAT", value)

    assert json_logs_from_env() is expected


def test_an_unknown_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOBBIN_LOG_FORMAT", "xml")

    with pytest.raises(ValueError, match="BOBBIN_LOG_FORMAT"):
        json_logs_from_env()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn = logging.getLogger("uvicorn.access")
    uvicorn_state = (list(uvicorn.handlers), uvicorn.propagate, uvicorn.level, uvicorn.disabled)
    uvicorn.setLevel(logging.INFO)  # other tests' servers leave it at WARNING
    uvicorn.disabled = False
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    uvicorn.handlers[:], uvicorn.propagate, uvicorn.level, uvicorn.disabled = uvicorn_state
    logging.captureWarnings(False)


def test_configure_logging_installs_one_handler_and_routes_uvicorn(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOBBIN_SECRET_KEY", OPERATOR_KEY)
    logging.getLogger("uvicorn.access").addHandler(logging.NullHandler())
    configure_logging(json=True)
    configure_logging(json=True)

    logging.getLogger("uvicorn.access").info("GET / with %s", OPERATOR_KEY)

    ours = [h for h in logging.getLogger().handlers if h.get_name() == "bobbin"]
    assert len(ours) == 1
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["logger"] == "uvicorn.access"
    assert line["message"] == "GET / with [redacted]"
