"""What the provider modules share: the local token estimate and the error edge.

The interface a provider implements (requests, events, the ``Provider``
protocol) is ``shared.llm``, a leaf that tools and agents import too.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from shared.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderUnreachable,
)
from shared.llm import ModelRequest


def estimate_text_tokens(text: str) -> int:
    """About four characters a token: the usual rule of thumb for English text."""
    return (len(text) + 3) // 4


def estimate_request_tokens(request: ModelRequest) -> int:
    """A local estimate of a request's input tokens: its text, tool calls and tool specs."""
    parts = [request.system or ""]
    for message in request.messages:
        parts.append(message.content)
        parts += [f"{c.name}{json.dumps(c.arguments)}" for c in message.tool_calls]
    parts += [f"{t.name}{t.description}{json.dumps(t.input_schema)}" for t in request.tools]
    overhead = 4 * len(request.messages)  # role markers and separators
    return sum(estimate_text_tokens(part) for part in parts) + overhead


# -- the error edge shared by provider modules -------------------------------------

MAX_DETAIL_CHARS = 300


def redact(text: str, secret: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` (taken from a server or an SDK) without ``secret``, cut to ``limit`` characters."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_detail(body: object, fallback: str) -> str:
    """The human message of a provider's error body (``{"error": {"message": ...}}`` and kin)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    if isinstance(body, str) and body:
        return body
    return fallback


# When a provider's limits reset: Anthropic's as RFC 3339 times, OpenAI's as durations.
_RESET_HEADERS = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)
_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$"
)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date),
    else the latest of the providers' rate-limit reset headers; None without any."""
    if (ms := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    if (value := headers.get("retry-after")) is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value))
        with contextlib.suppress(TypeError, ValueError):
            moment = email.utils.parsedate_to_datetime(value)
            return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    resets = [_reset_s(headers[name]) for name in _RESET_HEADERS if name in headers]
    known = [s for s in resets if s is not None]
    return max(known) if known else None


def _reset_s(value: str) -> float | None:
    """``2026-12-04T22:00:05Z`` or ``6m0s`` / ``20ms`` as seconds from now."""
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    match = _DURATION.match(value.strip())
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def error_for_status(
    status: int,
    detail: str,
    *,
    provider: str,
    secret: str,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """The Bobbin error for an HTTP error answer of a provider.

    401/402/403 -> ``ProviderAuthFailed``; 429 -> ``ProviderRateLimited``; 503
    and 529 (overloaded) -> ``ProviderOverloaded``, both throttling, with the
    wait the provider asked for; 408 -> ``ProviderUnreachable``; 409, 499 and
    other 5xx -> ``ProviderError`` (retryable); any other status ->
    ``ProviderBadRequest`` (not retryable). ``detail`` is redacted and capped.
    """
    message = f"{provider} answered HTTP {status}: {redact(detail, secret)}"
    if status in (401, 402, 403):
        return ProviderAuthFailed(message)
    if status == 429:
        return ProviderRateLimited(message, retry_after_s(headers or {}))
    if status in (503, 529):
        return ProviderOverloaded(message, retry_after_s(headers or {}))
    if status == 408:
        return ProviderUnreachable(message)
    if status in (409, 499) or status >= 500:
        return ProviderError(message)
    return ProviderBadRequest(message)


def scrub_exception(exc: BaseException, secret: str) -> None:
    """Redact ``secret`` from an SDK exception's text (tracebacks show the chained cause)."""
    exc.args = tuple(redact(a, secret, limit=10_000) if isinstance(a, str) else a for a in exc.args)
    if isinstance(message := getattr(exc, "message", None), str):
        with contextlib.suppress(AttributeError):
            exc.message = redact(message, secret, limit=10_000)  # type: ignore[attr-defined]
