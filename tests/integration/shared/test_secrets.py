"""A credential never leaves the server: not in events, turn rows, logs or error text."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from shared.resources import Resources
from shared.sink import MemorySink
from tests.fakellm import FakeLLM, Reply
from tests.helpers import add_agent, add_instance, run, send, turn_of

CANARY = "sk-canary-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4"


def dump_database(res: Resources) -> str:
    tables = [
        "project",
        "session",
        "thread",
        "thread_event",
        "turn",
        "approval",
        "provider_instance",
        "credential",
        "api_key",
        "bobbin_meta",
    ]

    def dump(session: object) -> str:
        conn = session.connection()  # type: ignore[attr-defined]
        return "\n".join(
            repr(row) for table in tables for row in conn.execute(text(f"SELECT * FROM {table}"))
        )

    return res.db.read_sync(dump)


async def test_canary_key_appears_nowhere_even_when_the_provider_echoes_it(
    res: Resources, llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    instance = await add_instance(res, llm, api_key=CANARY)
    agent_id = await add_agent(res, instance)
    llm.script(Reply(error_status=401, echo_headers=True))
    llm.script(Reply(error_status=400, echo_headers=True))
    failed_auth = await send(res, agent_id, "first")
    await run(res, agent_id)
    failed_request = await send(res, agent_id, "second")
    await run(res, agent_id)
    ok = await send(res, agent_id, "third")
    await run(res, agent_id)

    assert llm.requests[0].headers.get("authorization", "").endswith(CANARY)  # it was sent
    first, second = await turn_of(res, failed_auth.id), await turn_of(res, failed_request.id)
    assert first.error is not None and first.error["code"] == "provider_auth_failed"
    assert second.error is not None and second.error["code"] == "provider_error"
    assert (await turn_of(res, ok.id)).status == "completed"
    assert CANARY not in dump_database(res)
    assert isinstance(res.sink, MemorySink)
    assert all(CANARY not in event.model_dump_json() for event in res.sink.events)
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in (record.exc_text or "")
    assert CANARY not in caplog.text
