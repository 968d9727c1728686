"""Providers for the provider tests, made the one way every provider is made.

``create_provider_from_instance_and_model`` with ``prefetched``: the instance
and its credential's ciphertext as a worker's claim reads them, here built in
memory (the documented test seam: no database row is needed, and nothing
else of the creation path is skipped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet

from shared.crypto import Cipher
from shared.db import Database
from shared.http import HttpPools
from shared.llm import Provider
from shared.models import ProviderInstance
from shared.providers.instances import InstanceRead
from shared.providers.registry import ProviderRegistry
from tests.fakellm import FakeLLM
from tests.fakellm.fixtures import fake_llm, fake_llm_server, http_client, ssl_context
from tests.unit.shared.providers.support import API_KEY

__all__ = ["fake_llm", "fake_llm_server", "http_client", "ssl_context"]

MakeProvider = Callable[..., Awaitable[Any]]
# A model of each kind's catalog (any model for a compatible server); a request names its own.
CATALOG_MODEL = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o-mini"}


@pytest.fixture(scope="session")
def cipher() -> Cipher:
    return Cipher(Fernet.generate_key())


@pytest.fixture
async def registry(cipher: Cipher) -> AsyncIterator[ProviderRegistry]:
    db = Database("sqlite:///:memory:")  # never queried: every instance comes prefetched
    async with HttpPools(5) as pools:
        yield ProviderRegistry(db, cipher, pools)
    db.dispose()


@pytest.fixture
def make(fake_llm: FakeLLM, registry: ProviderRegistry, cipher: Cipher) -> MakeProvider:
    """``await make(kind, **instance)``: a provider of ``kind`` on the fake LLM."""

    async def make_provider(
        kind: str,
        *,
        api_key: str = API_KEY,
        base_url: str | None = None,
        timeout_s: float = 5.0,
        model_id: str | None = None,
    ) -> Provider:
        suffix = "" if kind == "anthropic" else "/v1"
        instance = ProviderInstance(
            id=f"pi_{kind}",
            name=kind,
            catalog_provider_id=kind,
            base_url=base_url or fake_llm.base_url + suffix,
            timeout_s=timeout_s,
        )
        found = (instance, cipher.encrypt(api_key) if api_key else None)
        return await registry.create_provider_from_instance_and_model(
            instance.id,
            model_id or CATALOG_MODEL.get(kind, "fake-large"),
            prefetched=InstanceRead(instance.id, found),
        )

    return make_provider


@pytest.fixture
def make_anthropic(make: MakeProvider) -> MakeProvider:
    return lambda **instance: make("anthropic", **instance)


@pytest.fixture
def make_openai(make: MakeProvider) -> MakeProvider:
    return lambda kind="openai", **instance: make(kind, **instance)


@pytest.fixture(params=["anthropic", "openai"])
def make_provider(request: pytest.FixtureRequest, make: MakeProvider) -> MakeProvider:
    """Each provider kind in turn, for behaviour both must share."""
    kind = request.param
    return lambda **instance: make(kind, **instance)
