"""The API's /metrics (queue depth, turns in progress, broker queue, streams) and the console's
static files, in process on the real database and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from shared.settings import Settings
from tests.helpers import add_agent, add_instance
from tests.integration.api.conftest import Api, in_process


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with in_process(settings) as running:
        yield running


async def metrics_once(api: Api, ready: Callable[[str], bool], timeout_s: float = 10) -> str:
    """/metrics after a refresh (what the background loop does), once ``ready`` holds.

    A kick may still be on its way to Redis when the API answers 202.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        await api.app.state.metrics.refresh(api.resources)
        text = (await api.client.get("/metrics")).text
        if ready(text) or asyncio.get_running_loop().time() > deadline:
            return text
        await asyncio.sleep(0.1)


def sample(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)]
    assert values, f"no {prefix!r} in:\n{text}"
    return values[0]


async def test_metrics_show_queued_turns_and_waiting_kicks(api: Api) -> None:
    resources = api.resources
    instance = await add_instance(resources, None)
    first, second = [await add_agent(resources, instance) for _ in range(2)]
    for agent_id, text in ((first, "one"), (first, "two"), (second, "three")):
        sent = await api.client.post(f"/v1/agents/{agent_id}/messages", json={"content": text})
        assert sent.status_code == 202, sent.text

    # One kick per agent: the first agent's second message finds its kick still pending.
    both_kicks = 'bobbin_broker_queue_length{queue="bobbin.turns"} 2'
    text = await metrics_once(api, lambda t: both_kicks in t)

    assert sample(text, "bobbin_queue_depth") == 3
    assert sample(text, "bobbin_turns_in_progress", 'status="running"') == 0
    assert sample(text, "bobbin_turns_in_progress", 'status="awaiting_approval"') == 0
    assert sample(text, "bobbin_broker_queue_length", 'queue="bobbin.turns"') == 2
    assert sample(text, "bobbin_api_requests_total", 'method="POST",status="202"') == 3
    assert sample(text, "bobbin_api_event_streams") == 0
    assert "_created" not in text


async def test_console_and_its_assets_are_served_without_a_key(api: Api) -> None:
    client = api.client
    client.headers.pop("Authorization")

    page = await client.get("/")
    script = await client.get("/static/console.js")
    style = await client.get("/static/console.css")

    assert page.status_code == 200 and "/static/console.js" in page.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert (await client.get("/v1/projects")).status_code == 401


async def test_console_keeps_the_key_in_the_tab_and_out_of_urls(api: Api) -> None:
    script = (await api.client.get("/static/console.js")).text

    assert "new EventSource" not in script  # it cannot send the key as a header
    assert "sessionStorage" in script and "localStorage" not in script
