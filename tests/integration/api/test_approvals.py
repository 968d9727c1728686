"""Tool calls that need approval are listed per session and decided once."""

from __future__ import annotations

from pathlib import Path

from tests.fakellm import FakeLLM, Reply
from tests.integration.api.conftest import Api
from tests.integration.api.support import (
    create_agent,
    error_code,
    get_turn,
    ok,
    run_turns,
    send,
)


async def awaiting_bash_call(api: Api, llm: FakeLLM, workdir: Path) -> tuple[str, dict]:
    """An agent whose turn waits for approval of one ``bash`` call."""
    agent_id = await create_agent(api, llm, working_directory=str(workdir))
    llm.script(Reply(tool_calls=[("bash", {"command": "echo approved"})]))
    llm.script(Reply(text="All done"))
    turn = await send(api, agent_id, "run it")
    await run_turns(api, agent_id)
    assert (await get_turn(api, turn["id"]))["status"] == "awaiting_approval"
    return agent_id, turn


async def test_pending_approval_is_listed_for_its_session(
    api: Api, llm: FakeLLM, tmp_path: Path
) -> None:
    agent_id, turn = await awaiting_bash_call(api, llm, tmp_path)
    session_id = agent_id.rsplit(".", 1)[0]

    listed = ok(await api.client.get(f"/v1/sessions/{session_id}/approvals"))

    assert listed["next_cursor"] is None and len(listed["approvals"]) == 1
    approval = listed["approvals"][0]
    assert set(approval) == {
        "agent_id",
        "turn_id",
        "tool_call_id",
        "tool",
        "arguments",
        "created_at",
    }
    assert (approval["agent_id"], approval["turn_id"]) == (agent_id, turn["id"])
    assert approval["tool"] == "bash" and approval["arguments"] == {"command": "echo approved"}
    assert approval["tool_call_id"].startswith("tc_")
    agent = ok(await api.client.get(f"/v1/agents/{agent_id}"))
    assert agent["status"] == "awaiting_approval"


async def test_decision_requeues_the_turn_and_a_second_decision_answers_409(
    api: Api, llm: FakeLLM, tmp_path: Path
) -> None:
    agent_id, turn = await awaiting_bash_call(api, llm, tmp_path)
    session_id = agent_id.rsplit(".", 1)[0]
    call_id = ok(await api.client.get(f"/v1/sessions/{session_id}/approvals"))["approvals"][0][
        "tool_call_id"
    ]
    path = f"/v1/agents/{agent_id}/approvals/{call_id}"

    decided = ok(await api.client.post(path, json={"decision": "allow_once"}), 202)
    again = await api.client.post(path, json={"decision": "deny"})

    assert decided == {"agent_id": agent_id, "tool_call_id": call_id, "decision": "allow_once"}
    assert error_code(again, 409) == "approval_already_decided"
    assert (await get_turn(api, turn["id"]))["status"] == "queued"
    assert ok(await api.client.get(f"/v1/sessions/{session_id}/approvals"))["approvals"] == []
    await run_turns(api, agent_id)
    done = await get_turn(api, turn["id"])
    assert done["status"] == "completed" and done["output"] == "All done"
    events = ok(await api.client.get(f"/v1/agents/{agent_id}/events"))["events"]
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["data"]["status"] == "completed" and "approved" in result["data"]["content"]


async def test_allow_session_grants_the_tool_to_the_session(
    api: Api, llm: FakeLLM, tmp_path: Path
) -> None:
    agent_id, _ = await awaiting_bash_call(api, llm, tmp_path)
    session_id = agent_id.rsplit(".", 1)[0]
    call_id = ok(await api.client.get(f"/v1/sessions/{session_id}/approvals"))["approvals"][0][
        "tool_call_id"
    ]

    response = await api.client.post(
        f"/v1/agents/{agent_id}/approvals/{call_id}", json={"decision": "allow_session"}
    )

    ok(response, 202)
    assert ok(await api.client.get(f"/v1/sessions/{session_id}"))["approved_tools"] == ["bash"]


async def test_denied_call_gets_a_denied_result(api: Api, llm: FakeLLM, tmp_path: Path) -> None:
    agent_id, turn = await awaiting_bash_call(api, llm, tmp_path)
    session_id = agent_id.rsplit(".", 1)[0]
    call_id = ok(await api.client.get(f"/v1/sessions/{session_id}/approvals"))["approvals"][0][
        "tool_call_id"
    ]

    path = f"/v1/agents/{agent_id}/approvals/{call_id}"
    ok(await api.client.post(path, json={"decision": "deny"}), 202)
    await run_turns(api, agent_id)

    events = ok(await api.client.get(f"/v1/agents/{agent_id}/events"))["events"]
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["data"]["status"] == "denied"
    assert (await get_turn(api, turn["id"]))["status"] == "completed"


async def test_awaiting_turn_is_cancelled_at_once(api: Api, llm: FakeLLM, tmp_path: Path) -> None:
    agent_id, turn = await awaiting_bash_call(api, llm, tmp_path)

    response = await api.client.post(f"/v1/turns/{turn['id']}/cancel")

    assert ok(response, 202)["turn"]["status"] == "cancelled"
    events = ok(await api.client.get(f"/v1/agents/{agent_id}/events"))["events"]
    assert events[-1]["type"] == "turn_cancelled"
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["data"]["status"] == "aborted"


async def test_unknown_approval_answers_404_and_bad_decision_422(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    path = f"/v1/agents/{agent_id}/approvals/tc_missing"

    missing = await api.client.post(path, json={"decision": "deny"})
    bad = await api.client.post(path, json={"decision": "maybe"})

    assert error_code(missing, 404) == "approval_not_found"
    assert error_code(bad, 422) == "invalid_request"
    assert "decision" in bad.json()["error"]["message"]
    response = await api.client.get("/v1/sessions/ses_x/approvals")
    assert error_code(response, 404) == "session_not_found"
