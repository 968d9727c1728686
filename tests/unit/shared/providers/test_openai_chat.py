"""OpenAIProvider through the real openai SDK against the fake server over HTTP."""

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
from shared.providers.openai_chat import PLACEHOLDER_KEY
from tests.fakellm import FakeLLM, Reply
from tests.unit.shared.providers.support import API_KEY, ask, collect

MakeOpenAI = Callable[..., Awaitable[Any]]


async def test_streams_text_in_chunks_then_usage_then_one_stop(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    fake_llm.script(Reply(text="hello brave new world", input_tokens=11, output_tokens=7))

    events = await collect(await make_openai(), ask("hi"))

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4
    assert "".join(d.text for d in deltas) == "hello brave new world"
    assert events[len(deltas) :] == [
        UsageEvent(input_tokens=11, output_tokens=7),
        StopEvent(reason="end_turn"),
    ]


async def test_asks_for_usage_and_sends_system_tools_and_max_completion_tokens(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    tool = ToolSpec(name="read_file", description="Read a file", input_schema={"type": "object"})

    await collect(await make_openai(), ask("hi", system="be brief", tools=[tool], max_tokens=123))

    [recorded] = fake_llm.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.body == {
        "model": "fake-large",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 123,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "read_file",
                    "description": "Read a file",
                    "parameters": {"type": "object"},
                },
            }
        ],
    }


async def test_compatible_kind_sends_max_tokens_and_a_placeholder_for_a_missing_key(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    provider = await make_openai(kind="openai-compatible", api_key="")

    await collect(provider, ask("hi", max_tokens=50))

    [recorded] = fake_llm.requests
    assert recorded.body["max_tokens"] == 50
    assert "max_completion_tokens" not in recorded.body
    assert recorded.headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


async def test_tool_calls_arrive_whole_with_parsed_arguments(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    fake_llm.script(
        Reply(tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})])
    )

    events = await collect(await make_openai(), ask("weather?"))

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert events[-1] == StopEvent(reason="tool_use")


async def test_tool_round_trip_sends_assistant_tool_calls_and_tool_messages(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    calls = [
        ToolCallRequest(id="call_1", name="read", arguments={"path": "a.txt"}),
        ToolCallRequest(id="call_2", name="read", arguments={"path": "b.txt"}),
    ]
    request = ModelRequest(
        model_id="fake-large",
        messages=[
            ChatMessage(role="user", content="read both"),
            ChatMessage(role="assistant", tool_calls=calls),
            ChatMessage(role="tool", tool_call_id="call_1", content="alpha"),
            ChatMessage(role="tool", tool_call_id="call_2", content="beta"),
        ],
    )

    events = await collect(await make_openai(), request)

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "done: beta"
    assert fake_llm.requests[0].body["messages"] == [
        {"role": "user", "content": "read both"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read", "arguments": '{"path": "a.txt"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "read", "arguments": '{"path": "b.txt"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "alpha"},
        {"role": "tool", "tool_call_id": "call_2", "content": "beta"},
    ]


async def test_length_finish_is_reported_as_max_tokens(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    fake_llm.script(Reply(text="cut short", stop_reason="max_tokens"))

    events = await collect(await make_openai(), ask("write a novel"))

    assert events[-1] == StopEvent(reason="max_tokens")


async def test_malformed_tool_arguments_are_a_provider_error(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    fake_llm.script(Reply(tool_calls=[("read", '{"path": "a.tx')]))

    with pytest.raises(ProviderError) as caught:
        await collect(await make_openai(), ask("read"))

    assert caught.value.code == "provider_error"


async def test_stream_ending_without_finish_reason_is_a_provider_error(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    fake_llm.script(Reply(text="half an answer", no_stop=True))

    with pytest.raises(ProviderError) as caught:
        await collect(await make_openai(), ask("hi"))

    assert caught.value.code == "provider_error"


async def test_list_models_returns_the_model_ids(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    fake_llm.configure(models=["gpt-a", "gpt-b"])

    assert await (await make_openai()).list_models() == ["gpt-a", "gpt-b"]


async def test_never_reads_the_sdk_environment_variables(
    fake_llm: FakeLLM, make_openai: MakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "operator-key-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-from-env")

    await collect(await make_openai(), ask("hi"))

    [recorded] = fake_llm.requests
    assert "from-env" not in str(recorded.headers)
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"


async def test_sequential_calls_through_one_shared_client_reuse_one_connection(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    for n in range(5):
        await collect(await make_openai(), ask(f"call {n}"))  # a new provider per turn, one pool

    assert fake_llm.requests_served == 5
    assert fake_llm.connections_accepted == 1


async def test_estimate_tokens_is_local_and_grows_with_the_conversation(
    fake_llm: FakeLLM, make_openai: MakeOpenAI
) -> None:
    provider = await make_openai()

    short, long = provider.estimate_tokens(ask("hi")), provider.estimate_tokens(ask("hi " * 400))

    assert 0 < short < long
    assert fake_llm.requests == []
