"""Our one retry policy for model calls: jittered exponential backoff, Retry-After honoured.

A call is retried only while nothing of it has been yielded: once the first
event went out (and may have been published), an error propagates unchanged.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared.errors import ProviderError, ProviderRateLimited
from shared.llm import ModelRequest, Provider, ProviderEvent


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first call. ``jitter`` is the fraction of each backoff
    drawn at random (0: exact backoff, 1: full jitter)."""

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.5

    def delay_s(self, attempt: int, error: ProviderError) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), at most ``max_delay_s``."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        delay = backoff * (1 - self.jitter * random.random())
        if isinstance(error, ProviderRateLimited) and error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        return min(delay, self.max_delay_s)


async def stream_with_retry(
    provider: Provider, request: ModelRequest, policy: RetryPolicy | None = None
) -> AsyncIterator[ProviderEvent]:
    """``provider.stream(request)``, retried on retryable ``ProviderError``s before the first event.

    Raises the last error when attempts run out, a non-retryable error at
    once, and any error after the first event unchanged.
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
            if started or not exc.retryable or attempt >= policy.max_attempts:
                raise
            delay_s = policy.delay_s(attempt, exc)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await asyncio.sleep(delay_s)
        attempt += 1
