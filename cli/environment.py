"""The provider instances the environment describes: light, for every command to import.

Only ``env_instances`` (used by ``bobbin providers add --from-env`` and
``bobbin dev``) reads ``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY`` and
``BOBBIN_LOCAL_BASE_URL``; the instances they make have fixed ids, so running
them again updates in place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_ANTHROPIC, ENV_OPENAI, ENV_LOCAL = "env-anthropic", "env-openai", "env-local"
ENV_PREFERENCE = (ENV_ANTHROPIC, ENV_OPENAI, ENV_LOCAL)


@dataclass(frozen=True)
class InstanceSpec:
    """An instance to save; with an ``id`` it is upserted under that id."""

    id: str | None
    name: str
    catalog_provider_id: str
    api_key: str | None = None
    base_url: str | None = None


def env_instances(environ: Mapping[str, str] | None = None) -> list[InstanceSpec]:
    """The instances the environment describes, in preference order (may be empty)."""
    env = os.environ if environ is None else environ
    found = []
    if key := env.get("ANTHROPIC_API_KEY", "").strip():
        found.append(InstanceSpec(ENV_ANTHROPIC, "Anthropic (environment)", "anthropic", key))
    if key := env.get("OPENAI_API_KEY", "").strip():
        found.append(InstanceSpec(ENV_OPENAI, "OpenAI (environment)", "openai", key))
    if url := env.get("BOBBIN_LOCAL_BASE_URL", "").strip():
        found.append(
            InstanceSpec(ENV_LOCAL, "Local server (environment)", "openai-compatible", None, url)
        )
    return found
