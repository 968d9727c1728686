"""Rehydrate an agent from its thread: the only state a worker needs for a turn."""

from __future__ import annotations

from shared.agents.agent import Agent, AgentConfig, AgentMetadata
from shared.agents.thread_store import ThreadState, ThreadStore, load_thread_state
from shared.providers.retry import RetryPolicy
from shared.resources import Resources
from shared.threads import ThreadWriter
from shared.tools import ToolContext, ToolExecutor, builtin_tools


async def rehydrate_agent(
    resources: Resources,
    writer: ThreadWriter,
    retry: RetryPolicy | None = None,
    state: ThreadState | None = None,
) -> Agent:
    """Build the agent of ``writer``'s thread from the database (or an already loaded
    ``state``); it has no provider until ``initialize()``."""
    if state is None:
        state = await resources.db.read(load_thread_state, writer.lease.thread_id)
    store = ThreadStore(resources.db, writer, state)
    meta = state.meta
    isolation = resources.isolation
    tools = builtin_tools(bash=isolation.offers_bash)
    settings = resources.settings
    return Agent(
        AgentConfig(
            thread_id=state.thread_id,
            tool_executor=ToolExecutor(tools, state.configuration.tool_policies or {}),
            thread_store=store,
            tools=tools,
            metadata=AgentMetadata(
                name=meta.get("name", ""),
                model_id=meta.get("model_id"),
                provider_instance_id=meta.get("provider_instance_id"),
            ),
            registry=resources.registry,
            tool_context=ToolContext(
                # Absolute, not resolved: every tool resolves it (strictly) itself, and
                # resolving here cost an lstat per path component at every turn.
                working_directory=store.workspace(settings.data_dir).absolute(),
                outbound=resources.outbound,
                isolation=isolation,
            ),
            max_tool_rounds=settings.max_tool_rounds,
            turn_timeout_s=settings.turn_timeout_s,
            retry=retry or RetryPolicy(),
        )
    )
