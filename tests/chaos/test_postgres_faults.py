"""PostgreSQL connections dropped mid-run, and the database closed to connections for a while:
a worker's turn retries or fails cleanly (with a code, never stuck), and the API answers 503
(readiness and routes), never 500.

These run on a dedicated database (``bobbin_chaos``), whatever ``BOBBIN_TEST_DB`` says: its
backends are terminated with ``pg_terminate_backend`` and it is closed with
``ALLOW_CONNECTIONS false``; the server itself is never stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.chaos.cluster import Cluster, pg_admin, set_pg_accepting, terminate_backends
from tests.chaos.conftest import MakeCluster, api_client, new_agents, running_on, wait_row
from tests.chaos.verify import Sent, audit, open_turns
from tests.e2e.flows import send, wait_turn
from tests.fakellm import Reply

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(150)]


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    try:
        pg_admin().close()
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL is not reachable as a superuser: {exc}")


@pytest.fixture
def reopen_database() -> Iterator[None]:
    """Whatever the test does, the dedicated database accepts connections afterwards."""
    yield
    set_pg_accepting(True)


async def test_dropped_connections_mid_run_leave_no_turn_stuck_or_duplicated(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1, db="postgres")
    assert cluster.llm is not None
    cluster.llm.configure(token_delay_s=0.03)  # each answer streams for about a third of a second
    async with api_client(cluster) as client:
        agents = await new_agents(client, cluster, 5)
        sent = [
            Sent(f"m{a}{n}", agent, f"message {n} to {a}")
            for a, agent in enumerate(agents)
            for n in range(3)
        ]
        for message in sent:
            message.turn_id = (await send(client, message.agent_id, message.content))["id"]

        dropped, statuses = 0, []
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(_open_turns, cluster, sent):
            assert time.monotonic() < deadline, "turns still open after 60 s of dropped connections"
            dropped += await asyncio.to_thread(terminate_backends)
            statuses.append((await client.get("/v1/projects")).status_code)
            await asyncio.sleep(0.3)
        turns = [(await client.get(f"/v1/turns/{m.turn_id}")).json() for m in sent]

    outcomes = sorted(
        t["status"] + (f" {t['error']['code']}" if "error" in t else "") for t in turns
    )
    print(
        f"figure: postgres drops: {dropped} backends dropped, API {sorted(set(statuses))}, "
        f"turns {dict(Counter(outcomes))}"
    )
    assert dropped > 0
    assert set(statuses) <= {200, 503}  # a dropped connection is never a 500
    for turn in turns:  # each one retried to completion, or failed with a code to retry on
        if turn["status"] != "completed":
            assert turn["error"]["code"] == "service_unavailable", turn
            assert turn["error"]["retryable"] is True, turn  # regression: it said False
    result = audit(cluster.db, sent)
    assert result.ok, result.problems()
    assert "unhandled error" not in cluster.logs()["api.log"]


async def test_database_outage_answers_503_then_everything_recovers(
    make_cluster: MakeCluster, reopen_database: None
) -> None:
    cluster = make_cluster(workers=1, db="postgres")
    assert cluster.llm is not None
    cluster.llm.script(Reply(text=" ".join(["slow"] * 20), token_delay_s=0.15), "slow")  # ~3 s
    async with api_client(cluster) as client:
        [agent] = await new_agents(client, cluster)
        turn = await send(client, agent, "a slow answer")
        await wait_row(cluster, turn["id"], running_on(cluster.workers[0].proc.pid))

        set_pg_accepting(False)
        try:
            answers = await _answers_during_outage(client, agent, turn["id"])
            await asyncio.sleep(4)  # the answer ends, and its commit fails, while the db is away
        finally:
            set_pg_accepting(True)
        recovered_s = await _ready_again(client)
        done = await wait_turn(client, turn["id"], timeout_s=40)
        after = await send(client, agent, "after the outage")
        after_done = await wait_turn(client, after["id"], timeout_s=30)

    print(
        f"figure: postgres outage: ready {recovered_s:.1f} s after reopening; "
        f"turn {done['status']} at attempt {done['attempt']}"
    )
    for name, (status, code, retry_after) in answers.items():
        assert status == 503 and code == "service_unavailable" and retry_after, (name, status)
    assert done["status"] == "completed" or done["error"]["code"], done
    assert after_done["status"] == "completed"
    sent = [
        Sent("slow", agent, "a slow answer", turn["id"]),
        Sent("after", agent, "after the outage", after["id"]),
    ]
    result = audit(cluster.db, sent)
    assert result.ok, result.problems()
    assert "unhandled error" not in cluster.logs()["api.log"]


async def _answers_during_outage(
    client: httpx.AsyncClient, agent_id: str, turn_id: str
) -> dict[str, tuple[int, str | None, str | None]]:
    requests = {
        "readyz": client.get("/readyz"),
        "list projects": client.get("/v1/projects"),
        "read a turn": client.get(f"/v1/turns/{turn_id}"),
        "send a message": client.post(
            f"/v1/agents/{agent_id}/messages", json={"content": "during the outage"}
        ),
        "open a stream": client.get(f"/v1/agents/{agent_id}/events/stream"),
    }
    answers = {}
    for name, request in requests.items():
        resp = await request
        code = resp.json().get("error", {}).get("code")
        answers[name] = (resp.status_code, code, resp.headers.get("retry-after"))
    return answers


async def _ready_again(client: httpx.AsyncClient) -> float:
    started = time.monotonic()
    for _ in range(300):
        if (await client.get("/readyz")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError("/readyz did not recover within 30 s of the database reopening")


def _open_turns(cluster: Cluster, sent: list[Sent]) -> int:
    for _ in range(50):  # the test's own connections are dropped too: read again
        try:
            return open_turns(cluster.db, [m.turn_id or "" for m in sent])
        except Exception:
            time.sleep(0.1)
    raise AssertionError("cannot read the database")
