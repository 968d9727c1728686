"""Rehydrate an agent from its thread: the only state a worker needs for a turn."""

from __future__ import annotations

from shared.agents.agent import Agent, AgentConfig
from shared.agents.context import AgentContext, load_agent_context
from shared.agents.recorder import AgentRecorder
from shared.providers.retry import RetryPolicy
from shared.resources import Resources
from shared.threads import ThreadWriter
from shared.tools import ToolContext, ToolExecutor, builtin_tools


async def rehydrate_agent(
    resources: Resources,
    writer: ThreadWriter,
    retry: RetryPolicy | None = None,
    context: AgentContext | None = None,
) -> Agent:
    """Build the agent of ``writer``'s thread from the database (or an already loaded
    ``context``); it has no provider until ``initialize()``."""
    if context is None:
        context = await resources.db.read(load_agent_context, writer.lease.thread_id)
    isolation = resources.isolation
    settings = resources.settings
    return Agent(
        AgentConfig(
            thread_id=context.thread_id,
            tool_executor=ToolExecutor(
                builtin_tools(bash=isolation.offers_bash),
                context.configuration.tool_policies or {},
            ),
            recorder=AgentRecorder(resources.db, writer, context),
            registry=resources.registry,
            flow=resources.flow,
            tool_context=ToolContext(
                # Absolute, not resolved: every tool resolves it (strictly) itself, and
                # resolving here cost an lstat per path component at every turn.
                working_directory=context.workspace(settings.data_dir).absolute(),
                outbound=resources.outbound,
                isolation=isolation,
            ),
            max_tool_rounds=settings.max_tool_rounds,
            turn_timeout_s=settings.turn_timeout_s,
            retry=retry or RetryPolicy(),
        )
    )
