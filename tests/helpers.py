"""Set-up steps the tests share: instances on the fake LLM, agents, running kicks in-process."""

from __future__ import annotations

from typing import Any

from shared.agents.records import AgentRecords
from shared.approvals import decide, pending_approvals
from shared.events import StoredEvent
from shared.models import Approval, Turn
from shared.providers.instances import create_instance
from shared.providers.retry import RetryPolicy
from shared.resources import Resources
from shared.sessions import create_chat_session, create_project, spawn_agent
from shared.threads import events_after
from shared.turns import enqueue_turn, get_turn
from tests.fakellm import FakeLLM
from workers.runner import WorkerState, run_kick

MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o-mini", "openai-compatible": "any"}
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def base_url_for(llm: FakeLLM, kind: str) -> str:
    return llm.base_url if kind == "anthropic" else llm.base_url + "/v1"


async def add_instance(
    res: Resources,
    llm: FakeLLM | None,
    kind: str = "anthropic",
    *,
    api_key: str | None = "sk-test-key",
    base_url: str | None = None,
    timeout_s: float = 5.0,
) -> str:
    encrypted = res.cipher.encrypt(api_key) if api_key else None
    view = await res.db.run(
        lambda s: create_instance(
            s,
            name=f"fake {kind}",
            catalog_provider_id=kind,
            base_url=base_url or (base_url_for(llm, kind) if llm else None),
            timeout_s=timeout_s,
            encrypted_key=encrypted,
        )
    )
    return view.id


async def add_agent(
    res: Resources,
    instance_id: str,
    kind: str = "anthropic",
    *,
    policies: dict[str, str] | None = None,
    working_directory: str | None = None,
    model_id: str | None = None,
) -> str:
    """A project and session configured for the instance; returns the coordinator's id."""
    config: dict[str, Any] = {
        "provider_instance_id": instance_id,
        "model_id": model_id or MODELS[kind],
    }
    if policies:
        config["tool_policies"] = policies

    def setup(s: Any) -> str:
        project = create_project(s, "test project", working_directory, config)
        s.flush()
        _, coordinator = create_chat_session(s, project.id, "test session", {})
        return coordinator

    return await res.db.run(setup)


async def add_sibling(res: Resources, agent_id: str, name: str, overrides: dict[str, Any]) -> str:
    session_id = agent_id.rsplit(".", 1)[0]
    thread = await res.db.run(spawn_agent, session_id, name, overrides)
    return thread.id


async def switch_provider(res: Resources, agent_id: str, instance_id: str, model_id: str) -> None:
    """PATCH the agent's own instance and model, as the API does (checked by the registry)."""
    patch = {"provider_instance_id": instance_id, "model_id": model_id}
    await AgentRecords(res.db, res.registry).update(agent_id, patch)


async def send(res: Resources, agent_id: str, content: str) -> Turn:
    turn, _ = await res.db.run(lambda s: enqueue_turn(s, agent_id, content, max_queued=1000))
    return turn


async def run(res: Resources, agent_id: str, worker: str = "worker-1") -> None:
    await run_kick(res, WorkerState(worker_id=worker, retry=FAST_RETRY), agent_id)


async def turn_of(res: Resources, turn_id: str) -> Turn:
    return await res.db.read(get_turn, turn_id)


async def events_of(res: Resources, agent_id: str) -> list[StoredEvent]:
    return await res.db.read(events_after, agent_id, 0, 100_000)


async def types_of(res: Resources, agent_id: str) -> list[str]:
    return [e.type for e in await events_of(res, agent_id)]


async def pending(res: Resources, session_id: str) -> list[Approval]:
    return await res.db.read(pending_approvals, session_id, None, 100)


async def decide_call(res: Resources, agent_id: str, call_id: str, decision: str) -> list[str]:
    return await res.db.run(decide, agent_id, call_id, decision)
