"""The one way a provider is made: ``create_provider_from_instance_and_model``.

``resolve`` checks the instance and model against the database and catalog
only; creation then loads the credential and builds the provider without
touching the network. Network failures surface at the first model call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.crypto import Cipher
from shared.db import Database
from shared.errors import (
    ModelNotFound,
    ProviderCredentialMissing,
    ProviderError,
    ProviderInstanceNotFound,
)
from shared.http import HttpPools
from shared.llm import ModelInfo, Provider
from shared.models import ProviderInstance
from shared.providers.anthropic import AnthropicProvider
from shared.providers.catalog import CatalogProvider, load_catalog
from shared.providers.instances import InstanceRead, load_instance_and_credential
from shared.providers.openai_chat import OpenAIProvider

PROVIDER_CLASSES: dict[str, type[AnthropicProvider] | type[OpenAIProvider]] = {
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
    "openai-compatible": OpenAIProvider,
}


@dataclass(frozen=True)
class ProviderTarget:
    """The instance and model a turn's provider is made for. ``prefetched`` is that
    instance (and its credential's ciphertext) as the claim's transaction read it, which
    saves a transaction per turn; None: creation reads it."""

    instance_id: str | None
    model_id: str | None
    prefetched: InstanceRead | None = None


@dataclass(frozen=True)
class ResolvedTarget:
    instance: ProviderInstance
    catalog: CatalogProvider
    model: ModelInfo
    encrypted_key: str | None


class ProviderHook(Protocol):
    """Sees what the registry makes: each provider (and may wrap it), or the error instead.
    A worker measures its model calls with one (``workers.instrumentation``)."""

    def made(self, provider: Provider) -> Provider: ...

    def refused(self, error: ProviderError) -> None: ...


class ProviderRegistry:
    def __init__(
        self, db: Database, cipher: Cipher, http: HttpPools, hook: ProviderHook | None = None
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._http = http
        self._hook = hook

    async def resolve(
        self,
        instance_id: str | None,
        model_id: str | None,
        *,
        prefetched: InstanceRead | None = None,
    ) -> ResolvedTarget:
        """Raises ProviderInstanceNotFound or ModelNotFound; reads the database only.

        ``prefetched`` is the instance as the caller's transaction just read it
        (a worker reads it in the claim); the database is read when it is
        absent or names another instance.
        """
        if not instance_id:
            raise ProviderInstanceNotFound("no provider instance is configured for this agent")
        if prefetched is not None and prefetched.instance_id == instance_id:
            found = prefetched.found
        else:
            found = await self._db.read(load_instance_and_credential, instance_id)
        if found is None:
            raise ProviderInstanceNotFound(f"provider instance {instance_id!r} does not exist")
        instance, encrypted_key = found
        catalog = load_catalog().provider(instance.catalog_provider_id)
        if catalog is None:
            raise ProviderInstanceNotFound(
                f"provider instance {instance_id!r} names an unknown catalog provider"
            )
        model = catalog.model_info(model_id, instance.models) if model_id else None
        if model is None:
            known = [m.id for m in catalog.models] + [m["id"] for m in instance.models]
            raise ModelNotFound(
                f"model {model_id!r} is not offered by {catalog.name}: "
                f"use one of {', '.join(known)}, or declare it in the instance's models"
            )
        return ResolvedTarget(instance, catalog, model, encrypted_key)

    async def create_provider_from_instance_and_model(
        self,
        instance_id: str | None,
        model_id: str | None,
        *,
        prefetched: InstanceRead | None = None,
    ) -> Provider:
        """The one way a provider is made. Raises ProviderInstanceNotFound, ModelNotFound or
        ProviderCredentialMissing; touches no network."""
        try:
            provider = self._build(await self.resolve(instance_id, model_id, prefetched=prefetched))
        except ProviderError as exc:
            if self._hook is not None:
                self._hook.refused(exc)
            raise
        return provider if self._hook is None else self._hook.made(provider)

    def _build(self, target: ResolvedTarget) -> Provider:
        if target.encrypted_key is not None:
            api_key = self._cipher.decrypt(target.encrypted_key)
        elif target.catalog.needs_credential:
            raise ProviderCredentialMissing(
                f"provider instance {target.instance.id!r} has no credential: add its API key"
            )
        else:
            api_key = ""  # the provider module sends its placeholder: the SDK insists on a key
        cls = PROVIDER_CLASSES[target.catalog.type]
        return cls(
            http_client=self._http.client(),
            api_key=api_key,
            base_url=target.instance.base_url or target.catalog.default_base_url,
            model=target.model,
            timeout_s=target.instance.timeout_s,
            kind=target.catalog.type,
        )
