from collections.abc import AsyncIterator

import pytest

from shared.resources import Resources, open_resources
from shared.settings import Settings
from shared.sink import MemorySink


@pytest.fixture
async def res(settings: Settings) -> AsyncIterator[Resources]:
    """Resources whose events go to memory, so tests can read what was published."""
    resources = await open_resources(settings, sink=MemorySink(), concurrency=20)
    yield resources
    await resources.aclose()
