"""What a worker measures of model calls and turns (workers/metrics.py, workers/instrumentation.py),
and its container health check (workers/health.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest

from shared.errors import ProviderRateLimited
from shared.llm import ModelInfo, ModelRequest, ProviderEvent, StopEvent, TextDelta, UsageEvent
from tests.processes import free_port
from workers.health import check
from workers.instrumentation import ObservedProvider
from workers.metrics import WorkerMetrics, port_from_env


class ScriptedProvider:
    """An in-memory provider: yields its events after ``delay_s``, or raises ``error``."""

    kind = "anthropic"
    model_id = "claude-test"
    model = ModelInfo(id="claude-test", cost_per_mtok_in=3.0, cost_per_mtok_out=15.0)

    def __init__(
        self, events: list[ProviderEvent], delay_s: float = 0.0, error: Exception | None = None
    ) -> None:
        self.events, self.delay_s, self.error = events, delay_s, error
        self.closed = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        try:
            await asyncio.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
            for event in self.events:
                yield event
        finally:
            self.closed += 1

    def estimate_tokens(self, request: ModelRequest) -> int:
        return 1

    def ignored(self, request: ModelRequest) -> list[str]:
        return []

    async def list_models(self) -> list[str]:
        return [self.model_id]


REQUEST = ModelRequest(model_id="claude-test", messages=[])
LABELS = {"provider": "anthropic", "model": "claude-test"}


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def drain(provider: ObservedProvider) -> list[ProviderEvent]:
    return [event async for event in provider.stream(REQUEST)]


async def test_a_model_call_records_time_to_first_token_and_tokens() -> None:
    metrics = WorkerMetrics()
    script: list[ProviderEvent] = [
        TextDelta(text="hi"),
        TextDelta(text=" there"),
        UsageEvent(input_tokens=7, output_tokens=3),
        StopEvent(reason="end_turn"),
    ]
    inner = ScriptedProvider(script, delay_s=0.05)

    events = await drain(ObservedProvider(inner, metrics))

    assert len(events) == 4 and inner.closed == 1
    assert sample(metrics, "bobbin_time_to_first_token_seconds_count", **LABELS) == 1
    assert sample(metrics, "bobbin_time_to_first_token_seconds_sum", **LABELS) >= 0.05
    assert sample(metrics, "bobbin_tokens_total", direction="input", **LABELS) == 7
    assert sample(metrics, "bobbin_tokens_total", direction="output", **LABELS) == 3
    # at $3 / $15 per Mtok: 7 x 3 + 3 x 15 = 66 micro-dollars
    assert sample(metrics, "bobbin_cost_usd_total", **LABELS) == pytest.approx(66e-6)


async def test_a_failed_attempt_counts_a_provider_error_by_code() -> None:
    metrics = WorkerMetrics()
    inner = ScriptedProvider([], error=ProviderRateLimited("slow down", 1.0))

    with pytest.raises(ProviderRateLimited):
        await drain(ObservedProvider(inner, metrics))

    labels = {"provider": "anthropic", "code": "provider_rate_limited"}
    assert sample(metrics, "bobbin_provider_errors_total", **labels) == 1
    assert sample(metrics, "bobbin_provider_throttled_total", **LABELS) == 1
    assert sample(metrics, "bobbin_time_to_first_token_seconds_count", **LABELS) == 0


def test_turn_runs_count_by_status_and_finished_ones_are_timed() -> None:
    metrics = WorkerMetrics()

    metrics.turn_ran("awaiting_approval", 1.0)
    metrics.turn_ran("completed", 2.0)
    metrics.turn_first_started(datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=3))

    assert sample(metrics, "bobbin_turns_total", status="awaiting_approval") == 1
    assert sample(metrics, "bobbin_turns_total", status="completed") == 1
    assert sample(metrics, "bobbin_turn_duration_seconds_count", status="completed") == 1
    assert sample(metrics, "bobbin_turn_duration_seconds_count", status="awaiting_approval") == 0
    assert 3 <= sample(metrics, "bobbin_turn_queue_wait_seconds_sum") < 10


def test_metric_names_start_with_bobbin() -> None:
    text = generate_latest(WorkerMetrics().registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}

    assert names and all(name.startswith("bobbin_") for name in names)


async def test_health_check_passes_while_the_loop_beats() -> None:
    metrics = WorkerMetrics()
    port = free_port()
    stop = metrics.serve(port, addr="127.0.0.1")
    assert stop is not None
    beat = asyncio.create_task(metrics.watch_loop(interval_s=0.05))
    try:
        await asyncio.sleep(0.1)
        assert await asyncio.to_thread(check, port) == ""
        metrics.heartbeat.set(0)
        assert "last beat" in await asyncio.to_thread(check, port, 30.0)
    finally:
        beat.cancel()
        stop()
    assert "no metrics" in await asyncio.to_thread(check, port)


def test_a_taken_port_leaves_the_worker_unmeasured_not_dead() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    port = free_port()
    stop = first.serve(port, addr="127.0.0.1")
    try:
        assert second.serve(port, addr="127.0.0.1") is None
    finally:
        assert stop is not None
        stop()


@pytest.mark.parametrize(("value", "expected"), [("", None), ("0", None), ("9808", 9808)])
def test_metrics_port_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int | None
) -> None:
    monkeypatch.setenv("BOBBIN_WORKER_METRICS_PORT", value)

    assert port_from_env() == expected


def test_a_bad_metrics_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOBBIN_WORKER_METRICS_PORT", "http")

    with pytest.raises(ValueError, match="BOBBIN_WORKER_METRICS_PORT"):
        port_from_env()
