"""Measuring the providers a worker's registry makes, through the registry's hook.

``ProviderMetrics`` is given to the ``ProviderRegistry`` when the worker's
resources are built: every provider it makes comes back wrapped in an
``ObservedProvider``, and every creation that fails is counted, so the one
creation path stays the registry's own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared.errors import ProviderError
from shared.llm import ModelRequest, Provider, ProviderEvent
from shared.pricing import NANOS_PER_USD, cost_nanos
from workers.metrics import WorkerMetrics

UNRESOLVED = "unresolved"  # the provider label of an error raised before a provider existed


@dataclass(frozen=True)
class ProviderMetrics:
    """The registry's hook (``shared.providers.registry.ProviderHook``) in a worker."""

    metrics: WorkerMetrics

    def made(self, provider: Provider) -> Provider:
        return ObservedProvider(provider, self.metrics)

    def refused(self, error: ProviderError) -> None:
        self.metrics.provider_error(UNRESOLVED, error.code)


class ObservedProvider:
    """A provider whose model calls are measured."""

    def __init__(self, inner: Provider, metrics: WorkerMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.kind = inner.kind
        self.model_id = inner.model_id
        self.model = inner.model

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        metrics, labels = self._metrics, (self.kind, self.model_id)
        started = time.monotonic()
        waiting = True
        events = self._inner.stream(request)
        try:
            async for event in events:
                if waiting and event.type in ("text_delta", "tool_call"):
                    metrics.ttft.labels(*labels).observe(time.monotonic() - started)
                    waiting = False
                elif event.type == "usage" and event.reported:
                    metrics.tokens.labels(*labels, "input").inc(event.input_tokens)
                    metrics.tokens.labels(*labels, "output").inc(event.output_tokens)
                    cost = cost_nanos(self.model, event.input_tokens, event.output_tokens)
                    if cost:
                        metrics.cost.labels(*labels).inc(cost / NANOS_PER_USD)
                yield event
        except ProviderError as exc:
            metrics.provider_error(self.kind, exc.code)
            if exc.throttled:
                metrics.throttled.labels(*labels).inc()
            raise
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def estimate_tokens(self, request: ModelRequest) -> int:
        return self._inner.estimate_tokens(request)

    def ignored(self, request: ModelRequest) -> list[str]:
        return self._inner.ignored(request)

    async def list_models(self) -> list[str]:
        return await self._inner.list_models()
