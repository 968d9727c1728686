"""Configuration inheritance: project -> session -> agent, resolved field by field.

``tool_policies`` merge per tool (the nearest level wins); every other field
is replaced whole by the nearest level that sets it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ProviderNotConfigured

Policy = Literal["allow", "ask", "deny"]


class Configuration(BaseModel):
    """What a project, a session or an agent may set."""

    model_config = ConfigDict(extra="forbid")

    provider_instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    model_id: str | None = Field(default=None, min_length=1, max_length=200)
    tool_policies: dict[str, Policy] | None = None
    system_prompt: str | None = Field(default=None, max_length=100_000)


AGENT_OVERRIDE_KEYS = ("provider_instance_id", "model_id", "tool_policies", "system_prompt")


def effective(
    project: dict[str, Any], session: dict[str, Any], agent_meta: dict[str, Any] | None = None
) -> Configuration:
    """The configuration in force: the session's over the project's, and the agent's own
    overrides (kept in its thread's metadata) over both. The one place it is worked out."""
    agent = {key: (agent_meta or {}).get(key) for key in AGENT_OVERRIDE_KEYS}
    merged: dict[str, Any] = {}
    policies: dict[str, Policy] = {}
    for level in (project, session, agent):
        for key, value in level.items():
            if value is None or key not in Configuration.model_fields:
                continue
            if key == "tool_policies":
                policies.update(value)
            else:
                merged[key] = value
    return Configuration(**merged, tool_policies=policies)


def provider_pair(config: Configuration) -> tuple[str, str]:
    """The instance and model ``config`` names; raises ProviderNotConfigured without them."""
    if not config.provider_instance_id or not config.model_id:
        raise ProviderNotConfigured(
            "no provider instance and model are configured: set provider_instance_id and "
            "model_id on the project, the session or the agent"
        )
    return config.provider_instance_id, config.model_id


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
