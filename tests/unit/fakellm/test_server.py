"""The fake LLM server: wire formats, scripting, config, control routes, process mode.

The SDKs are imported here on purpose: the fake is only right if the real clients accept it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fakellm import FakeLLM, FakeLLMProcess, RemoteFakeLLM, Reply

ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"authorization": "Bearer sk-test-key-123456"}


def _anthropic_body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": text}]} | extra


def _openai_body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]} | extra


def _sse_data(raw: str) -> list[str]:
    return [line[6:] for line in raw.splitlines() if line.startswith("data: ")]


def _anthropic_sdk(llm: FakeLLM, client: httpx2.AsyncClient) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="k", base_url=llm.base_url, max_retries=0, http_client=client
    )


def _openai_sdk(llm: FakeLLM, client: httpx2.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="k", base_url=llm.base_url + "/v1", max_retries=0, http_client=client
    )


async def _post(client: httpx2.AsyncClient, llm: FakeLLM, path: str, body: Any) -> httpx2.Response:
    headers = ANTHROPIC_HEADERS if path == "/v1/messages" else OPENAI_HEADERS
    return await client.post(llm.base_url + path, json=body, headers=headers)


async def _answer_text(client: httpx2.AsyncClient, llm: FakeLLM, text: str) -> str:
    response = await _post(client, llm, "/v1/messages", _anthropic_body(text))
    return response.json()["content"][0]["text"]


# -- wire formats ---------------------------------------------------------------------


async def test_anthropic_stream_sends_events_in_anthropics_order(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(text="two words", tool_calls=[("read", {"path": "a"})]))

    response = await _post(http_client, fake_llm, "/v1/messages", _anthropic_body(stream=True))

    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for d in _sse_data(response.text)]
    assert [d["type"] for d in data] == events
    assert data[-2]["delta"]["stop_reason"] == "tool_use"
    partial = "".join(d["delta"]["partial_json"] for d in data[7:9])
    assert json.loads(partial) == {"path": "a"}


async def test_openai_stream_ends_with_usage_chunk_and_done_only_when_asked(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    usage_body = _openai_body(stream=True, stream_options={"include_usage": True})
    with_usage = _sse_data(
        (await _post(http_client, fake_llm, "/v1/chat/completions", usage_body)).text
    )
    without = _sse_data(
        (await _post(http_client, fake_llm, "/v1/chat/completions", _openai_body(stream=True))).text
    )

    assert with_usage[-1] == without[-1] == "[DONE]"
    usage_chunk = json.loads(with_usage[-2])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    assert json.loads(without[-2])["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in json.loads(d) for d in without[:-1])


async def test_non_streaming_answers_parse_in_both_sdks(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(text="plain", tool_calls=[("read", {"path": "a"})]), times=2)

    message = await _anthropic_sdk(fake_llm, http_client).messages.create(**_anthropic_body())
    completion = await _openai_sdk(fake_llm, http_client).chat.completions.create(**_openai_body())

    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"path": "a"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    choice = completion.choices[0]
    assert choice.message.content == "plain"
    assert choice.message.tool_calls[0].function.arguments == '{"path":"a"}'  # type: ignore[index,union-attr]
    assert choice.finish_reason == "tool_calls"


async def test_models_route_answers_in_the_flavour_of_the_client(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    anthropic_models = _anthropic_sdk(fake_llm, http_client).models.list()
    openai_models = _openai_sdk(fake_llm, http_client).models.list()

    assert [m.type async for m in anthropic_models] == ["model", "model"]
    assert [m.object async for m in openai_models] == ["model", "model"]


async def test_unknown_route_is_404(fake_llm: FakeLLM, http_client: httpx2.AsyncClient) -> None:
    response = await http_client.post(fake_llm.base_url + "/v1/embeddings", json={})

    assert response.status_code == 404


async def test_unaccepted_key_gets_each_providers_real_looking_401(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.configure(api_keys=["the-right-key"])

    a = await _post(http_client, fake_llm, "/v1/messages", _anthropic_body())
    o = await _post(http_client, fake_llm, "/v1/chat/completions", _openai_body())

    assert a.status_code == o.status_code == 401
    assert a.json()["error"]["type"] == "authentication_error"
    assert o.json()["error"]["code"] == "invalid_api_key"
    assert "sk-test-key-123456" not in o.text  # masked, as OpenAI does


# -- scripting --------------------------------------------------------------------------


async def test_scripts_are_consumed_fifo_by_the_first_request_they_match(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(text="for alpha"), match="alpha")
    fake_llm.script(Reply(text="first any"))
    fake_llm.script(Reply(text="second any"))

    answers = [await _answer_text(http_client, fake_llm, t) for t in ("beta", "alpha", "x", "y")]

    assert answers == ["first any", "for alpha", "second any", "echo: y"]


async def test_script_serves_times_requests_or_every_request_with_times_none(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(text="twice"), match="a", times=2)
    fake_llm.script(Reply(text="always"), match="b", times=None)

    answers = [await _answer_text(http_client, fake_llm, t) for t in ("a", "a", "a", "b", "b")]

    assert answers == ["twice", "twice", "echo: a", "always", "always"]


async def test_match_looks_at_the_last_user_text_even_after_tool_results(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(text="weather summary"), match="weather")
    messages = [
        {"role": "user", "content": "what is the weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sun"}],
        },
    ]

    response = await _post(
        http_client, fake_llm, "/v1/messages", _anthropic_body() | {"messages": messages}
    )

    assert response.json()["content"][0]["text"] == "weather summary"


async def test_default_reply_reports_the_first_200_chars_of_a_tool_result(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    messages = [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "run", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "x" * 500},
    ]

    response = await _post(
        http_client, fake_llm, "/v1/chat/completions", _openai_body() | {"messages": messages}
    )

    assert response.json()["choices"][0]["message"]["content"] == "done: " + "x" * 200


async def test_scripted_error_carries_status_body_and_headers(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(error_status=429, error_headers={"retry-after": "3"}))

    response = await _post(http_client, fake_llm, "/v1/messages", _anthropic_body())

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_cut_after_chunks_closes_the_connection_mid_stream(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.script(Reply(text="one two three", cut_after_chunks=1))
    received = b""

    with pytest.raises(httpx2.RemoteProtocolError):
        async with http_client.stream(
            "POST",
            fake_llm.base_url + "/v1/messages",
            json=_anthropic_body(stream=True),
            headers=ANTHROPIC_HEADERS,
        ) as response:
            async for data in response.aiter_bytes():
                received += data

    assert b'"text": "one "' in received
    assert b"two" not in received


async def test_latency_and_token_delay_slow_the_answer(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.configure(latency_s=0.05, token_delay_s=0.02)
    fake_llm.script(Reply(text="a b c d"))
    started = time.monotonic()

    await _post(http_client, fake_llm, "/v1/messages", _anthropic_body(stream=True))

    assert time.monotonic() - started >= 0.05 + 3 * 0.02


# -- connections, recording, control ----------------------------------------------------


async def test_keeps_connections_alive_and_sets_tcp_nodelay_on_them(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    for _ in range(3):
        await _post(http_client, fake_llm, "/v1/messages", _anthropic_body(stream=True))
        await _post(http_client, fake_llm, "/v1/chat/completions", _openai_body())

    assert fake_llm.stats() == {
        "connections_accepted": 1,
        "connections_nodelay": 1,
        "requests_served": 6,
        "requests_throttled": 0,
        "scripts_pending": 0,
    }


async def test_records_path_headers_and_parsed_body(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    await _post(http_client, fake_llm, "/v1/chat/completions", _openai_body("record me"))

    [recorded] = fake_llm.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == OPENAI_HEADERS["authorization"]
    assert recorded.body == _openai_body("record me")


async def test_reset_forgets_scripts_requests_counters_and_config(
    fake_llm: FakeLLM, http_client: httpx2.AsyncClient
) -> None:
    fake_llm.configure(latency_s=1.0, api_keys=["x"])
    fake_llm.script(Reply(text="stale"))
    await _post(http_client, fake_llm, "/v1/models", None)

    fake_llm.reset()

    assert fake_llm.requests == []
    assert fake_llm.stats()["connections_accepted"] == 0
    assert fake_llm.config.latency_s == 0 and fake_llm.config.api_keys is None
    assert await _answer_text(http_client, fake_llm, "fresh") == "echo: fresh"


def test_control_routes_drive_the_server_over_http(fake_llm: FakeLLM) -> None:
    remote = RemoteFakeLLM(fake_llm.base_url)
    remote.configure(token_delay_s=0.0, models=["remote-model"])
    remote.script(Reply(text="scripted remotely"), match="remote")

    with httpx2.Client() as client:
        answer = client.post(
            fake_llm.base_url + "/v1/messages",
            json=_anthropic_body("remote?"),
            headers=ANTHROPIC_HEADERS,
        ).json()
        models = client.get(fake_llm.base_url + "/v1/models", headers=OPENAI_HEADERS).json()

    assert answer["content"][0]["text"] == "scripted remotely"
    assert [m["id"] for m in models["data"]] == ["remote-model"]
    assert [r["path"] for r in remote.requests()] == ["/v1/messages", "/v1/models"]
    assert remote.stats()["connections_accepted"] == 1  # control connections are not counted
    remote.reset()
    assert remote.requests() == []


def test_runs_as_a_process_controlled_over_http() -> None:
    with FakeLLMProcess("--api-key", "proc-key") as remote:
        remote.script(Reply(text="from the process"))
        with httpx2.Client() as client:
            headers = {"x-api-key": "proc-key", "anthropic-version": "2023-06-01"}
            response = client.post(
                remote.base_url + "/v1/messages", json=_anthropic_body(), headers=headers
            )
            wrong = client.post(
                remote.base_url + "/v1/messages", json=_anthropic_body(), headers=ANTHROPIC_HEADERS
            )

        assert response.json()["content"][0]["text"] == "from the process"
        assert wrong.status_code == 401
        assert remote.stats()["requests_served"] == 2


def test_stop_returns_promptly_while_a_request_hangs() -> None:
    llm = FakeLLM().start()
    llm.script(Reply(hang=True))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            with httpx2.Client(timeout=10) as client:
                client.post(
                    llm.base_url + "/v1/messages", json=_anthropic_body(), headers=ANTHROPIC_HEADERS
                )
        except httpx2.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    while not llm.requests:
        time.sleep(0.005)
    started = time.monotonic()
    llm.stop()
    thread.join(timeout=5)

    assert time.monotonic() - started < 2
    assert outcome and isinstance(outcome[0], httpx2.RemoteProtocolError)
