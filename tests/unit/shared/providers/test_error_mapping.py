"""SDK and HTTP failures become ``ProviderError``s with the right code, never leaking the key.

This test imports the SDKs on purpose: it checks that every error class they
export is mapped (the application itself imports them only in
``shared/providers/``).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from shared.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderUnreachable,
)
from shared.llm import TextDelta
from shared.providers import anthropic as anthropic_provider
from shared.providers import openai_chat
from tests.fakellm import FakeLLM, Reply
from tests.unit.shared.providers.support import API_KEY, ask, collect

MakeProvider = Callable[..., Awaitable[Any]]


async def _failure(provider: Any, reply: Reply, fake_llm: FakeLLM) -> ProviderError:
    fake_llm.script(reply)
    with pytest.raises(ProviderError) as caught:
        await collect(provider, ask("hi"))
    return caught.value


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "provider_error", False),
        (401, "provider_auth_failed", False),
        (403, "provider_auth_failed", False),
        (404, "provider_error", False),
        (422, "provider_error", False),
        (429, "provider_rate_limited", True),
        (500, "provider_error", True),
        (503, "provider_error", True),
        (529, "provider_error", True),
    ],
)
async def test_http_error_status_maps_to_code_and_retryability(
    fake_llm: FakeLLM, make_provider: MakeProvider, status: int, code: str, retryable: bool
) -> None:
    error = await _failure(await make_provider(), Reply(error_status=status), fake_llm)

    assert (error.code, error.retryable) == (code, retryable)
    assert isinstance(error, ProviderBadRequest) == (code == "provider_error" and not retryable)


async def test_rate_limit_carries_retry_after_from_the_header(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    reply = Reply(error_status=429, error_headers={"retry-after": "7"})

    error = await _failure(await make_provider(), reply, fake_llm)

    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after_s == 7.0


async def test_hang_past_the_timeout_is_provider_unreachable(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    error = await _failure(await make_provider(timeout_s=0.1), Reply(hang=True), fake_llm)

    assert error.code == "provider_unreachable"


async def test_stream_stalled_past_the_timeout_is_provider_unreachable(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    reply = Reply(text="slow words here", token_delay_s=2.0)

    error = await _failure(await make_provider(timeout_s=0.1), reply, fake_llm)

    assert error.code == "provider_unreachable"


async def test_refused_connection_is_provider_unreachable(make_provider: MakeProvider) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = await make_provider(base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(ProviderUnreachable):
        await collect(provider, ask("hi"))


async def test_malformed_stream_is_provider_error(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    error = await _failure(
        await make_provider(), Reply(text="fine words", malformed=True), fake_llm
    )

    assert error.code == "provider_error"
    assert error.retryable


async def test_stream_cut_after_the_first_token_is_provider_error(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.script(Reply(text="one two three", cut_after_chunks=1))
    received = []

    with pytest.raises(ProviderError) as caught:
        async for event in (await make_provider()).stream(ask("hi")):
            received.append(event)

    assert received == [TextDelta(text="one ")]
    assert caught.value.code == "provider_error"


@pytest.mark.parametrize("status", [400, 401, 429, 500])
async def test_canary_key_never_appears_in_the_error_even_when_the_server_echoes_it(
    fake_llm: FakeLLM, make_provider: MakeProvider, status: int
) -> None:
    reply = Reply(error_status=status, echo_headers=True)

    error = await _failure(await make_provider(), reply, fake_llm)

    assert "request headers" in error.message  # the echo did come back...
    assert API_KEY not in error.message  # ...without the key
    assert API_KEY not in str(error.to_dict())
    assert API_KEY not in str(error.__cause__)


async def test_error_text_from_the_server_is_capped(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    reply = Reply(error_status=400, error_body={"error": {"message": "x" * 10_000}})

    error = await _failure(await make_provider(), reply, fake_llm)

    assert len(error.message) < 400


async def test_unaccepted_key_gets_the_providers_401_and_provider_auth_failed(
    fake_llm: FakeLLM, make_provider: MakeProvider
) -> None:
    fake_llm.configure(api_keys=["some-other-key"])

    with pytest.raises(ProviderAuthFailed) as caught:
        await collect(await make_provider(), ask("hi"))

    assert API_KEY not in caught.value.message


# -- completeness: every SDK error class maps ---------------------------------------


def _sdk_error_classes(sdk: ModuleType) -> list[type[Exception]]:
    """Every ``*Error`` the SDK exports, and every loaded subclass of its ``APIError``."""
    exported = {
        obj
        for name in dir(sdk)
        if name.endswith("Error")
        and isinstance(obj := getattr(sdk, name), type)
        and issubclass(obj, sdk.APIError)
    }
    found: set[type[Exception]] = set()
    pending: list[type[Exception]] = [sdk.APIError]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.add(cls)
            pending += cls.__subclasses__()
    return sorted(exported | found, key=lambda c: c.__qualname__)


def _status_of(sdk: ModuleType, cls: type[Exception]) -> int:
    status = getattr(cls, "status_code", None)
    if isinstance(status, int):
        return status
    return 500 if issubclass(cls, sdk.InternalServerError) else 418


def _instantiate(sdk: ModuleType, cls: Any) -> Exception:
    request = httpx2.Request("POST", "http://fake.invalid/v1/messages")
    if issubclass(cls, sdk.APIStatusError):
        response = httpx2.Response(_status_of(sdk, cls), request=request)
        body = {"error": {"message": f"echo {API_KEY}", "type": "api_error"}}
        try:
            return cls(f"Error code: {response.status_code} - {body}", response=response, body=body)
        except TypeError:  # openai.OAuthError builds its own message
            return cls(response=response, body=body)
    if issubclass(cls, sdk.APIResponseValidationError):
        return cls(httpx2.Response(200, request=request), body=None)
    if issubclass(cls, sdk.APITimeoutError):
        return cls(request)
    if issubclass(cls, sdk.APIConnectionError):
        return cls(request=request)
    return cls(f"echo {API_KEY}", request, body=None)


SDKS = [
    pytest.param(anthropic, anthropic_provider.map_error, id="anthropic"),
    pytest.param(openai, openai_chat.map_error, id="openai"),
]


@pytest.mark.parametrize(("sdk", "map_error"), SDKS)
def test_every_sdk_api_error_class_maps_to_a_provider_error_without_the_key(
    sdk: ModuleType, map_error: Callable[..., ProviderError]
) -> None:
    classes = _sdk_error_classes(sdk)
    assert len(classes) > 10

    for cls in classes:
        mapped = map_error(_instantiate(sdk, cls), API_KEY)
        assert isinstance(mapped, ProviderError), cls
        assert API_KEY not in mapped.message, cls


@pytest.mark.parametrize(("sdk", "map_error"), SDKS)
@pytest.mark.parametrize(
    ("name", "expected", "retryable"),
    [
        ("AuthenticationError", ProviderAuthFailed, False),
        ("PermissionDeniedError", ProviderAuthFailed, False),
        ("RateLimitError", ProviderRateLimited, True),
        ("BadRequestError", ProviderBadRequest, False),
        ("NotFoundError", ProviderBadRequest, False),
        ("UnprocessableEntityError", ProviderBadRequest, False),
        ("InternalServerError", ProviderError, True),
        ("APITimeoutError", ProviderUnreachable, True),
        ("APIConnectionError", ProviderUnreachable, True),
        ("APIResponseValidationError", ProviderError, True),
    ],
)
def test_principal_sdk_errors_map_to_their_bobbin_class(
    sdk: ModuleType,
    map_error: Callable[..., ProviderError],
    name: str,
    expected: type[ProviderError],
    retryable: bool,
) -> None:
    mapped = map_error(_instantiate(sdk, getattr(sdk, name)), API_KEY)

    assert type(mapped) is expected
    assert mapped.retryable is retryable


@pytest.mark.parametrize(("sdk", "map_error"), SDKS)
def test_base_sdk_error_maps_to_provider_error(
    sdk: ModuleType, map_error: Callable[..., ProviderError]
) -> None:
    base = sdk.AnthropicError if sdk is anthropic else sdk.OpenAIError

    assert type(map_error(base(f"odd {API_KEY}"), API_KEY)) is ProviderError


def test_anthropic_error_event_inside_a_200_stream_maps_by_its_error_type() -> None:
    request = httpx2.Request("POST", "http://fake.invalid/v1/messages")
    response = httpx2.Response(200, request=request)
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    exc = anthropic.APIStatusError("Overloaded", response=response, body=body)

    mapped = anthropic_provider.map_error(exc, API_KEY, mid_stream=True)

    assert (mapped.code, mapped.retryable) == ("provider_error", True)
