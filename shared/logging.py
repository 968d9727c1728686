"""Process logging: one root handler, human or JSON lines, with the turn's context on each line.

``configure_logging(json=True)`` writes every record as one JSON object per
line: ``ts``, ``level``, ``logger``, ``message``, ``exc`` when there is a
traceback, and, inside a turn, ``turn_id``, ``agent_id`` and ``worker_id``
(set by the worker's runner with ``log_context``). ``json=False`` is the
human format of ``bobbin dev``, with the same context as a ``[key=value]``
suffix. Uvicorn's and Celery's loggers are routed to the same handler.

No secret reaches a line: the formatters scrub bearer tokens, ``sk-`` style
keys, ``api_key`` values, passwords in URLs and the values of the secret
environment variables from the whole formatted text, traceback included.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

SECRET_ENV_VARS = (
    "BOBBIN_SECRET_KEY",
    "BOBBIN_BOOTSTRAP_API_KEY",
    "BOBBIN_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "FLOWER_BASIC_AUTH",
)
# Loggers that install handlers of their own: they are made to propagate to ours.
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "bobbin_log_context", default=MappingProxyType({})
)

_PATTERNS = (
    # Authorization: Bearer <token>
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), rf"\1{REDACTED}"),
    # Provider keys: sk-..., sk-ant-..., sk-proj-...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), REDACTED),
    # api_key=..., "api_key": "...", x-api-key: ..., secret_key=..., password=...
    (
        re.compile(
            r"(?i)((?:api[_-]?key|secret[_-]?key|password|passwd|credential)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+"
        ),
        rf"\1{REDACTED}",
    ),
    # scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/\s@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (e.g. turn_id, agent_id, worker_id) to every line logged inside.

    Tasks created inside inherit the fields (asyncio copies the context).
    """
    added = {key: value for key, value in fields.items() if value is not None}
    token = _context.set(MappingProxyType({**_context.get(), **added}))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, str]:
    return _context.get()


class Redactor:
    """Scrubs credentials out of a formatted line."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len)[::-1]

    @classmethod
    def from_environment(cls) -> Redactor:
        return cls([os.environ.get(name, "") for name in SECRET_ENV_VARS])

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        line.update(current_context())
        if record.exc_info:
            line["exc"] = self._redact(self.formatException(record.exc_info))
        elif record.stack_info:
            line["exc"] = self._redact(self.formatStack(record.stack_info))
        return jsonlib.dumps(line, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = current_context()
        if context:
            text += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return self._redact(text)


def configure_logging(json: bool, level: str | int = "INFO") -> None:
    """Send every logger's records to one stderr handler, as JSON lines or human text.

    Idempotent: a second call replaces the handler the first one installed.
    """
    redactor = Redactor.from_environment()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if json else HumanFormatter(redactor))
    handler.set_name("bobbin")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "bobbin"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    logging.captureWarnings(True)  # warnings become log lines too


def json_logs_from_env() -> bool | None:
    """``BOBBIN_LOG_FORMAT``: ``json`` -> True, ``text`` -> False, unset -> None.

    Raises ValueError on any other value.
    """
    value = os.environ.get("BOBBIN_LOG_FORMAT", "").strip().lower()
    if not value:
        return None
    if value not in ("json", "text"):
        raise ValueError(f"BOBBIN_LOG_FORMAT must be json or text, not {value!r}")
    return value == "json"
