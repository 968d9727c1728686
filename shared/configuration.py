"""Configuration inheritance: project -> session -> agent, resolved field by field.

``tool_policies`` merge per tool and ``model_settings`` per setting (the
nearest level wins); every other field is replaced whole by the nearest level
that sets it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ProviderNotConfigured
from shared.llm import ReasoningEffort

Policy = Literal["allow", "ask", "deny"]


class ModelSettings(BaseModel):
    """How the model is asked to answer (API.md v1.1); merged per field across levels."""

    model_config = ConfigDict(extra="forbid")

    max_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=4
    )
    reasoning_effort: ReasoningEffort | None = None
    context_window: int | None = Field(default=None, ge=1)
    compact_at: float | None = Field(default=None, ge=0.1, le=0.95)


class Configuration(BaseModel):
    """What a project, a session or an agent may set."""

    model_config = ConfigDict(extra="forbid")

    provider_instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    model_id: str | None = Field(default=None, min_length=1, max_length=200)
    tool_policies: dict[str, Policy] | None = None
    system_prompt: str | None = Field(default=None, max_length=100_000)
    model_settings: ModelSettings | None = None


AGENT_OVERRIDE_KEYS = (
    "provider_instance_id",
    "model_id",
    "tool_policies",
    "system_prompt",
    "model_settings",
)
MERGED_PER_FIELD = ("tool_policies", "model_settings")


def effective(
    project: dict[str, Any], session: dict[str, Any], agent_meta: dict[str, Any] | None = None
) -> Configuration:
    """The configuration in force: the session's over the project's, and the agent's own
    overrides (kept in its thread's metadata) over both. The one place it is worked out."""
    agent = {key: (agent_meta or {}).get(key) for key in AGENT_OVERRIDE_KEYS}
    merged: dict[str, Any] = {key: {} for key in MERGED_PER_FIELD}
    for level in (project, session, agent):
        for key, value in level.items():
            if value is None or key not in Configuration.model_fields:
                continue
            if key in MERGED_PER_FIELD:  # per tool, per setting: the nearest level wins
                merged[key].update({k: v for k, v in value.items() if v is not None})
            else:
                merged[key] = value
    return Configuration(**merged)


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
