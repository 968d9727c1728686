"""Pytest fixtures for the fake LLM: import them into a ``conftest.py`` that needs them."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from tests.fakellm.server import FakeLLM


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    """One fake LLM server on a background thread for the whole session."""
    with FakeLLM() as llm:
        yield llm


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM) -> FakeLLM:
    """The session's fake LLM server, reset: no scripts, requests, counters or config changes."""
    fake_llm_server.reset()
    return fake_llm_server


@pytest.fixture(scope="session")
def ssl_context() -> ssl.SSLContext:
    """Built once: loading the CA store costs ~20 ms, more than a fake model call."""
    return ssl.create_default_context()


@pytest.fixture
async def http_client(ssl_context: ssl.SSLContext) -> AsyncIterator[httpx2.AsyncClient]:
    """A fresh shared HTTP client, as a process's Resources would hold one."""
    async with httpx2.AsyncClient(verify=ssl_context) as client:
        yield client
