"""Agents own their provider and run turns from their thread alone (real DB, real SDKs)."""

from __future__ import annotations

import pytest

from shared.agents.agent import Agent, AgentConfig
from shared.agents.factory import rehydrate_agent
from shared.errors import AgentNotInitialized, ProviderInstanceNotFound
from shared.leases import acquire_lease
from shared.providers.instances import delete_instance
from shared.resources import Resources
from shared.sink import MemorySink
from shared.threads import ThreadWriter
from tests.fakellm import FakeLLM, Reply
from tests.helpers import (
    add_agent,
    add_instance,
    events_of,
    run,
    send,
    switch_provider,
    turn_of,
    types_of,
)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_turn_streams_answer_and_completes(res: Resources, llm: FakeLLM, kind: str) -> None:
    instance = await add_instance(res, llm, kind)
    agent_id = await add_agent(res, instance, kind)
    llm.script(Reply(text="Hello from the model"), match="hi")
    turn = await send(res, agent_id, "hi there")

    await run(res, agent_id)

    done = await turn_of(res, turn.id)
    assert done.status == "completed"
    assert done.output == "Hello from the model"
    assert await types_of(res, agent_id) == [
        "system_prompt",
        "user_message",
        "turn_started",
        "agent_message",
        "turn_completed",
    ]
    events = await events_of(res, agent_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(e.turn_id == turn.id for e in events)
    assert isinstance(res.sink, MemorySink)
    tokens = "".join(e.data["text"] for e in res.sink.of_type("agent_token"))
    assert tokens == "Hello from the model"


async def test_agent_has_no_provider_until_initialized(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    lease = await res.db.run(acquire_lease, agent_id, "w", 30)
    assert lease is not None
    agent = await rehydrate_agent(res, ThreadWriter(res.db, lease, res.sink))

    with pytest.raises(AgentNotInitialized):
        _ = agent.provider
    await agent.initialize()

    assert agent.provider.model_id == "claude-sonnet-4-6"
    assert not hasattr(agent.config, "provider")
    assert not any(f == "provider" for f in AgentConfig.__dataclass_fields__)
    assert isinstance(agent, Agent)


async def test_deleted_instance_fails_turn_with_provider_instance_not_found(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    await res.db.run(delete_instance, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["code"] == "provider_instance_not_found"
    events = await events_of(res, agent_id)
    assert events[-1].type == "turn_failed"
    assert events[-1].data["code"] == "provider_instance_not_found"
    assert isinstance(res.sink, MemorySink)
    assert res.sink.of_type("turn_failed")[-1].data["code"] == "provider_instance_not_found"
    assert llm.requests == []


async def test_agent_without_credential_fails_turn_with_code(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm, api_key=None)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "provider_credential_missing"
    assert llm.requests == []


async def test_openai_compatible_instance_needs_no_credential(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm, "openai-compatible", api_key=None)
    agent_id = await add_agent(res, instance, "openai-compatible", model_id="my-local-model")
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "completed"
    assert llm.requests[-1].body["model"] == "my-local-model"


async def test_unknown_model_fails_turn_with_model_not_found(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, model_id="no-such-model")
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "model_not_found"


async def test_rejected_key_fails_turn_with_auth_failed_without_retry(
    res: Resources, llm: FakeLLM
) -> None:
    llm.configure(api_keys=["the-right-key"])
    instance = await add_instance(res, llm, api_key="a-wrong-key")
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "provider_auth_failed"
    assert len(llm.requests) == 1


async def test_unreachable_server_fails_turn_with_provider_unreachable(res: Resources) -> None:
    instance = await add_instance(res, None, base_url="http://127.0.0.1:9", timeout_s=1)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "provider_unreachable"


async def test_persistent_rate_limit_fails_turn_with_provider_rate_limited(
    res: Resources, llm: FakeLLM
) -> None:
    llm.script(Reply(error_status=429, error_headers={"retry-after": "0"}), times=None)
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "provider_rate_limited"
    assert len(llm.requests) == 3  # FAST_RETRY's attempts


@pytest.mark.parametrize("status", [429, 503])
async def test_transient_errors_are_retried_then_succeed(
    res: Resources, llm: FakeLLM, status: int
) -> None:
    llm.script(Reply(error_status=status, error_headers={"retry-after": "0"}))
    llm.script(Reply(text="recovered"))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    done = await turn_of(res, turn.id)
    assert done.status == "completed" and done.output == "recovered"
    assert len(llm.requests) == 2


async def test_stream_cut_after_first_token_keeps_partial_text_and_fails(
    res: Resources, llm: FakeLLM
) -> None:
    llm.script(Reply(text="one two three four", cut_after_chunks=2))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "provider_error"
    assert failed.error["retryable"] is True
    events = await events_of(res, agent_id)
    partial = [e for e in events if e.type == "agent_message"]
    assert partial and partial[0].data["partial"] is True
    assert len(llm.requests) == 1


async def test_switching_provider_between_turns_uses_the_new_one(
    res: Resources, llm: FakeLLM
) -> None:
    anthropic = await add_instance(res, llm, "anthropic")
    openai = await add_instance(res, llm, "openai")
    agent_id = await add_agent(res, anthropic)
    first = await send(res, agent_id, "first")
    await run(res, agent_id)

    await switch_provider(res, agent_id, openai, "gpt-4o")
    second = await send(res, agent_id, "second")
    await run(res, agent_id)

    assert [r.path for r in llm.requests] == ["/v1/messages", "/v1/chat/completions"]
    assert (await turn_of(res, first.id)).model_id == "claude-sonnet-4-6"
    assert (await turn_of(res, second.id)).model_id == "gpt-4o"
    notes = [e for e in await events_of(res, agent_id) if e.type == "local_system_message"]
    assert len(notes) == 1 and "gpt-4o" in notes[0].data["content"]
    # the new provider received the whole conversation so far
    sent = llm.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]


async def test_agents_of_one_session_use_their_own_providers(res: Resources, llm: FakeLLM) -> None:
    from tests.helpers import add_sibling

    anthropic = await add_instance(res, llm, "anthropic")
    openai = await add_instance(res, llm, "openai")
    coordinator = await add_agent(res, anthropic)
    helper = await add_sibling(
        res, coordinator, "helper", {"provider_instance_id": openai, "model_id": "gpt-4.1"}
    )
    await send(res, coordinator, "to coordinator")
    await send(res, helper, "to helper")

    await run(res, coordinator)
    await run(res, helper)

    assert {r.path for r in llm.requests} == {"/v1/messages", "/v1/chat/completions"}
    assert helper.endswith(".2")


async def test_turns_of_one_agent_run_in_order(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turns = [await send(res, agent_id, f"message {i}") for i in range(3)]

    await run(res, agent_id)

    for t in turns:
        assert (await turn_of(res, t.id)).status == "completed"
    users = [e.data["content"] for e in await events_of(res, agent_id) if e.type == "user_message"]
    assert users == ["message 0", "message 1", "message 2"]


async def test_initialize_raises_typed_error_not_none(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    await res.db.run(delete_instance, instance)
    lease = await res.db.run(acquire_lease, agent_id, "w", 30)
    assert lease is not None
    agent = await rehydrate_agent(res, ThreadWriter(res.db, lease, res.sink))

    with pytest.raises(ProviderInstanceNotFound) as caught:
        await agent.initialize()

    assert caught.value.code == "provider_instance_not_found"
    with pytest.raises(AgentNotInitialized):
        _ = agent.provider
