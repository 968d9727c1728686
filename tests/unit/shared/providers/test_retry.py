"""stream_with_retry: retries transient failures before the first event only, with backoff."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.errors import ProviderError
from shared.llm import ModelRequest, ProviderEvent, TextDelta
from shared.providers.retry import RetryPolicy, stream_with_retry
from tests.fakellm import FakeLLM, Reply
from tests.unit.shared.providers.support import ask

MakeProvider = Callable[..., Awaitable[Any]]
FAST = RetryPolicy(base_delay_s=0.001, max_delay_s=0.5)


async def _run(provider: Any, request: ModelRequest, policy: RetryPolicy) -> list[ProviderEvent]:
    return [event async for event in stream_with_retry(provider, request, policy)]


def _text(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize(
    ("status", "code"), [(429, "provider_rate_limited"), (529, "provider_error")]
)
async def test_a_provider_asking_to_slow_down_is_not_retried_here(
    fake_llm: FakeLLM, make_provider: MakeProvider, status: int, code: str
) -> None:
    """The call waits without a worker slot instead (shared.agents.calls): the error goes
    up at once, with the wait the provider asked for."""
    fake_llm.script(Reply(error_status=status, error_headers={"retry-after": "7"}), times=None)

    with pytest.raises(ProviderError) as caught:
        await _run(await make_provider(), ask("hi"), FAST)

    assert caught.value.code == code and caught.value.throttled
    assert caught.value.retry_after_s == 7
    assert len(fake_llm.requests) == 1


async def test_a_failing_server_is_retried_then_succeeds(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(error_status=500), times=2)

    events = await _run(await make_provider(), ask("hi"), FAST)

    assert _text(events) == "echo: hi"
    assert len(fake_llm.requests) == 3


async def test_stream_cut_before_the_first_token_is_retried(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(text="lost words", cut_after_chunks=0))

    events = await _run(await make_provider(), ask("hi"), FAST)

    assert _text(events) == "echo: hi"
    assert len(fake_llm.requests) == 2


async def test_auth_failure_fails_at_once_without_retry(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(error_status=401), times=None)

    with pytest.raises(ProviderError) as caught:
        await _run(await make_provider(), ask("hi"), FAST)

    assert caught.value.code == "provider_auth_failed"
    assert len(fake_llm.requests) == 1


async def test_bad_request_fails_at_once_without_retry(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(error_status=400), times=None)

    with pytest.raises(ProviderError):
        await _run(await make_provider(), ask("hi"), FAST)

    assert len(fake_llm.requests) == 1


async def test_stream_cut_after_the_first_token_is_not_retried(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(text="one two three", cut_after_chunks=1))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for event in stream_with_retry(await make_provider(), ask("hi"), FAST):
            received.append(event)

    assert received == [TextDelta(text="one ")]
    assert caught.value.code == "provider_error"
    assert len(fake_llm.requests) == 1


async def test_gives_up_after_max_attempts_with_the_last_error(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(error_status=500), times=None)

    with pytest.raises(ProviderError) as caught:
        await _run(
            await make_provider(), ask("hi"), RetryPolicy(max_attempts=3, base_delay_s=0.001)
        )

    assert caught.value.code == "provider_error"
    assert len(fake_llm.requests) == 3


async def test_hang_is_retried_as_unreachable_then_succeeds(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(hang=True))

    events = await _run(await make_provider(timeout_s=0.1), ask("hi"), FAST)

    assert _text(events) == "echo: hi"
    assert len(fake_llm.requests) == 2


# -- the backoff itself -------------------------------------------------------------


def test_backoff_doubles_per_attempt_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0, jitter=0)

    assert [policy.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_draws_each_delay_below_its_backoff() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, jitter=0.5)
    delays = {policy.delay_s(2) for _ in range(50)}

    assert all(1.0 <= d <= 2.0 for d in delays)
    assert len(delays) > 1
