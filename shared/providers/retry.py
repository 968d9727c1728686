"""Our retry policy for a model call's transient failures: jittered exponential backoff.

A call is retried only while nothing of it has been yielded: once the first
event went out (and may have been published), an error propagates unchanged.
A provider that asks callers to slow down (429, 503, 529: ``throttled``) is
not retried here: the call waits without holding a worker slot, its attempts
counted on the turn (``shared.agents.calls``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared.errors import ProviderError
from shared.llm import ModelRequest, Provider, ProviderEvent


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first call. ``jitter`` is the fraction of each backoff
    drawn at random (0: exact backoff, 1: full jitter)."""

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.5

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), at most ``max_delay_s``."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return backoff * (1 - self.jitter * random.random())


async def stream_with_retry(
    provider: Provider, request: ModelRequest, policy: RetryPolicy | None = None
) -> AsyncIterator[ProviderEvent]:
    """``provider.stream(request)``, retried on retryable ``ProviderError``s before the first event.

    Raises the last error when attempts run out, a non-retryable or throttled
    error at once, and any error after the first event unchanged.
    """
    policy = policy or RetryPolicy()
    attempt = 1
    while True:
        started = False
        stream = provider.stream(request)
        try:
            async for event in stream:
                started = True
                yield event
            return
        except ProviderError as exc:
            if started or not exc.retryable or exc.throttled or attempt >= policy.max_attempts:
                raise
            delay_s = policy.delay_s(attempt)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await asyncio.sleep(delay_s)
        attempt += 1
