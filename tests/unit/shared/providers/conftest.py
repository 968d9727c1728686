from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from shared.providers.anthropic import AnthropicProvider
from shared.providers.openai_chat import OpenAIProvider
from tests.fakellm import FakeLLM
from tests.fakellm.fixtures import fake_llm, fake_llm_server, http_client, ssl_context
from tests.unit.shared.providers.support import API_KEY

__all__ = ["fake_llm", "fake_llm_server", "http_client", "ssl_context"]


@pytest.fixture
def make_anthropic(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> Callable[..., AnthropicProvider]:
    def make(**overrides: Any) -> AnthropicProvider:
        options: dict[str, Any] = {
            "http_client": http_client,
            "api_key": API_KEY,
            "base_url": fake_llm.base_url,
            "model_id": "fake-large",
            "timeout_s": 5.0,
            "kind": "anthropic",
        }
        return AnthropicProvider(**(options | overrides))

    return make


@pytest.fixture
def make_openai(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> Callable[..., OpenAIProvider]:
    def make(**overrides: Any) -> OpenAIProvider:
        options: dict[str, Any] = {
            "http_client": http_client,
            "api_key": API_KEY,
            "base_url": fake_llm.base_url + "/v1",
            "model_id": "fake-large",
            "timeout_s": 5.0,
            "kind": "openai",
        }
        return OpenAIProvider(**(options | overrides))

    return make


@pytest.fixture(params=["anthropic", "openai"])
def make_provider(
    request: pytest.FixtureRequest,
    make_anthropic: Callable[..., AnthropicProvider],
    make_openai: Callable[..., OpenAIProvider],
) -> Callable[..., Any]:
    """Each provider kind in turn, for behaviour both must share."""
    return make_anthropic if request.param == "anthropic" else make_openai
