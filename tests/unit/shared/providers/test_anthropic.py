"""AnthropicProvider through the real anthropic SDK against the fake server over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.errors import ProviderError
from shared.llm import (
    ChatMessage,
    ModelRequest,
    StopEvent,
    TextDelta,
    ToolCallEvent,
    ToolCallRequest,
    ToolSpec,
    UsageEvent,
)
from tests.fakellm import FakeLLM, Reply
from tests.unit.shared.providers.support import API_KEY, ask, collect

MakeAnthropic = Callable[..., Awaitable[Any]]


async def test_streams_text_in_chunks_then_usage_then_one_stop(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    fake_llm.script(Reply(text="hello brave new world", input_tokens=11, output_tokens=7))

    events = await collect(await make_anthropic(), ask("hi"))

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4
    assert "".join(d.text for d in deltas) == "hello brave new world"
    assert events[len(deltas) :] == [
        UsageEvent(input_tokens=11, output_tokens=7),
        StopEvent(reason="end_turn"),
    ]


async def test_sends_model_max_tokens_system_and_tools_with_the_key(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    tool = ToolSpec(name="read_file", description="Read a file", input_schema={"type": "object"})
    request = ask("hi", system="be brief", tools=[tool], max_tokens=123)

    await collect(await make_anthropic(), request)

    [recorded] = fake_llm.requests
    assert recorded.path == "/v1/messages"
    assert API_KEY in (recorded.headers.get("x-api-key", "") + recorded.headers["authorization"])
    assert "anthropic-version" in recorded.headers
    assert recorded.body == {
        "model": "fake-large",
        "max_tokens": 123,
        "stream": True,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object"}}
        ],
    }


async def test_tool_call_arrives_whole_with_parsed_arguments(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    fake_llm.script(Reply(text="Let me look.", tool_calls=[("get_weather", {"city": "Paris"})]))

    events = await collect(await make_anthropic(), ask("weather?"))

    [call_event] = [e for e in events if isinstance(e, ToolCallEvent)]
    assert call_event.call.name == "get_weather"
    assert call_event.call.arguments == {"city": "Paris"}
    assert call_event.call.id.startswith("toolu_")
    assert events[-1] == StopEvent(reason="tool_use")


async def test_tool_round_trip_sends_tool_use_blocks_and_groups_consecutive_results(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    calls = [
        ToolCallRequest(id="toolu_1", name="read", arguments={"path": "a.txt"}),
        ToolCallRequest(id="toolu_2", name="read", arguments={"path": "b.txt"}),
    ]
    request = ModelRequest(
        model_id="fake-large",
        messages=[
            ChatMessage(role="user", content="read both"),
            ChatMessage(role="assistant", content="Reading.", tool_calls=calls),
            ChatMessage(role="tool", tool_call_id="toolu_1", content="alpha"),
            ChatMessage(role="tool", tool_call_id="toolu_2", content="no such file", is_error=True),
        ],
    )

    events = await collect(await make_anthropic(), request)

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "done: no such file"
    assert fake_llm.requests[0].body["messages"] == [
        {"role": "user", "content": "read both"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.txt"}},
                {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b.txt"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "alpha"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "no such file",
                    "is_error": True,
                },
            ],
        },
    ]


async def test_max_tokens_stop_is_reported(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    fake_llm.script(Reply(text="cut short", stop_reason="max_tokens"))

    events = await collect(await make_anthropic(), ask("write a novel"))

    assert events[-1] == StopEvent(reason="max_tokens")


async def test_malformed_tool_arguments_are_a_provider_error(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    fake_llm.script(Reply(tool_calls=[("read", '{"path": "a.tx')]))

    with pytest.raises(ProviderError) as caught:
        await collect(await make_anthropic(), ask("read"))

    assert caught.value.code == "provider_error"


async def test_stream_ending_without_message_stop_is_a_provider_error(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    fake_llm.script(Reply(text="half an answer", no_stop=True))

    with pytest.raises(ProviderError) as caught:
        await collect(await make_anthropic(), ask("hi"))

    assert caught.value.code == "provider_error"


async def test_list_models_returns_the_model_ids(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    fake_llm.configure(models=["claude-a", "claude-b"])

    assert await (await make_anthropic()).list_models() == ["claude-a", "claude-b"]


async def test_never_reads_the_sdk_environment_variables(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "operator-key-from-env")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "operator-token-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")

    await collect(await make_anthropic(), ask("hi"))

    [recorded] = fake_llm.requests
    assert "from-env" not in str(recorded.headers)
    assert API_KEY in str(recorded.headers)


async def test_sequential_calls_through_one_shared_client_reuse_one_connection(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    for n in range(5):
        await collect(await make_anthropic(), ask(f"call {n}"))  # a new provider per turn, one pool

    assert fake_llm.requests_served == 5
    assert fake_llm.connections_accepted == 1


async def test_estimate_tokens_is_local_and_grows_with_the_conversation(
    fake_llm: FakeLLM, make_anthropic: MakeAnthropic
) -> None:
    provider = await make_anthropic()

    short, long = provider.estimate_tokens(ask("hi")), provider.estimate_tokens(ask("hi " * 400))

    assert 0 < short < long
    assert fake_llm.requests == []
