"""Helpers shared by the provider tests."""

from __future__ import annotations

from typing import Any

from shared.llm import ChatMessage, ModelRequest, ProviderEvent

API_KEY = "sk-test-0123456789abcdef"


def ask(text: str, **fields: Any) -> ModelRequest:
    """A one-message request."""
    return ModelRequest(
        model_id="fake-large", messages=[ChatMessage(role="user", content=text)], **fields
    )


async def collect(provider: Any, request: ModelRequest) -> list[ProviderEvent]:
    return [event async for event in provider.stream(request)]
