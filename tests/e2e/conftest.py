from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.processes import ApiProcess, WorkerProcess


@pytest.fixture
async def client(api_server: ApiProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=api_server.url, headers=api_server.headers, timeout=30
    ) as http:
        yield http


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return start_worker().wait_ready()
