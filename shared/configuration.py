"""Configuration inheritance: project -> session -> agent, resolved field by field.

``tool_policies`` merge per tool (the nearest level wins); every other field
is replaced whole by the nearest level that sets it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["allow", "ask", "deny"]


class Configuration(BaseModel):
    """What a project, a session or an agent may set."""

    model_config = ConfigDict(extra="forbid")

    provider_instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    model_id: str | None = Field(default=None, min_length=1, max_length=200)
    tool_policies: dict[str, Policy] | None = None
    system_prompt: str | None = Field(default=None, max_length=100_000)


AGENT_OVERRIDE_KEYS = ("provider_instance_id", "model_id", "tool_policies", "system_prompt")


def effective(*levels: dict[str, Any]) -> Configuration:
    """Resolve levels ordered from the farthest (project) to the nearest (agent)."""
    merged: dict[str, Any] = {}
    policies: dict[str, Policy] = {}
    for level in levels:
        for key, value in level.items():
            if value is None or key not in Configuration.model_fields:
                continue
            if key == "tool_policies":
                policies.update(value)
            else:
                merged[key] = value
    return Configuration(**merged, tool_policies=policies)


def for_agent(
    project: dict[str, Any], session: dict[str, Any], agent_meta: dict[str, Any]
) -> Configuration:
    """An agent's configuration: its overrides (from its metadata) over its session's, its
    project's."""
    return effective(project, session, {key: agent_meta.get(key) for key in AGENT_OVERRIDE_KEYS})


def apply_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A PATCH: given fields replace, ``None`` removes the override."""
    result = dict(current)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful agent working in a project directory. Use the tools you are given "
    "when they help, and answer concisely."
)
