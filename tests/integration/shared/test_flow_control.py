"""Flow control, on the real database, Redis and SDKs: model settings, usage and cost,
cooldowns shared by every worker, limits, budgets (API.md v1.1, docs/flow-control.md)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import update
from sqlmodel import Session

from shared import budgets
from shared.agents.agent import CancelReason
from shared.agents.records import AgentRecords
from shared.errors import BudgetExceeded
from shared.models import ChatSession, Project, ProviderInstance, Turn
from shared.resources import Resources
from shared.throttle import Refused, Throttle
from tests.conftest import TEST_REDIS_URL
from tests.fakellm import FakeLLM, Reply
from tests.helpers import FAST_RETRY, add_agent, add_instance, events_of, run, send, turn_of
from tests.processes import free_port
from workers.runner import WorkerState, run_kick

pytestmark = pytest.mark.timeout(60)


async def set_config(res: Resources, agent_id: str, **configuration: Any) -> None:
    """Set the project's configuration fields (the agent's session inherits them)."""
    session_id = agent_id.rsplit(".", 1)[0]

    def write(s: Session) -> None:
        chat = s.get(ChatSession, session_id)
        assert chat is not None
        project = s.get(Project, chat.project_id)
        assert project is not None
        project.configuration = {**project.configuration, **configuration}
        s.add(project)

    await res.db.run(write)


async def run_until_done(res: Resources, agent_id: str, turn_id: str, limit_s: float = 30) -> Turn:
    """Run kicks as a worker's sweeper and timers would, until the turn is no longer queued."""
    deadline = time.monotonic() + limit_s
    while True:
        await run(res, agent_id)
        turn = await turn_of(res, turn_id)
        if turn.status != "queued":
            return turn
        assert time.monotonic() < deadline, turn
        await asyncio.sleep(max(0.02, (turn.not_before or 0) - time.time()))


# -- model settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "limit"),
    [
        ("anthropic", "max_tokens"),
        ("openai", "max_completion_tokens"),
        ("openai-compatible", "max_tokens"),
    ],
)
async def test_model_settings_merge_per_field_and_reach_the_provider(
    res: Resources, llm: FakeLLM, kind: str, limit: str
) -> None:
    instance = await add_instance(res, llm, kind)
    agent_id = await add_agent(res, instance, kind, model_id={"openai": "gpt-4.1"}.get(kind))
    await set_config(
        res, agent_id, model_settings={"max_output_tokens": 64, "temperature": 0.2, "stop": ["END"]}
    )
    records = AgentRecords(res.db, res.registry)
    await records.update(agent_id, {"model_settings": {"temperature": 0.5}})  # the agent's own
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    done = await turn_of(res, turn.id)
    assert done.status == "completed", done.error
    body = llm.requests[-1].body
    assert body[limit] == 64  # from the project
    assert body.get("stop", body.get("stop_sequences")) == ["END"]
    if kind == "anthropic":  # it takes an effort, not a temperature: left out, and said
        assert "temperature" not in body
        notes = [e for e in await events_of(res, agent_id) if e.type == "local_system_message"]
        assert notes[0].data["ignored_settings"] == ["temperature"]
    else:
        assert body["temperature"] == 0.5  # the agent's own wins


async def test_a_setting_the_model_cannot_take_is_left_out_and_said_once(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm, "openai")
    agent_id = await add_agent(res, instance, "openai", model_id="gpt-5-mini")  # a reasoning model
    await set_config(res, agent_id, model_settings={"temperature": 0.3, "reasoning_effort": "low"})
    llm.script(Reply(tool_calls=[("file_list", {"path": "."})]))
    turn = await send(res, agent_id, "look around")

    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "completed"
    for request in llm.requests:  # two model calls: the tool round and the answer
        assert "temperature" not in request.body and request.body["reasoning_effort"] == "low"
    notes = [e for e in await events_of(res, agent_id) if e.type == "local_system_message"]
    assert len(notes) == 1 and notes[0].data["ignored_settings"] == ["temperature"]


async def test_a_model_that_cannot_use_tools_is_sent_none(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm, "openai-compatible", api_key=None)
    agent_id = await add_agent(res, instance, "openai-compatible", model_id="gemma-3-270m")
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "completed"
    assert "tools" not in llm.requests[-1].body
    notes = [e for e in await events_of(res, agent_id) if e.type == "local_system_message"]
    assert [n.data["content"] for n in notes] == [
        "openai-compatible model gemma-3-270m cannot use tools, so it answers without them."
    ]
    assert notes[0].data["tools_unsupported"] is True


# -- usage and cost --------------------------------------------------------------------


async def test_a_turn_costs_its_tokens_at_the_models_prices(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm, "anthropic")  # claude-sonnet-4-6: $3 / $15 per Mtok
    agent_id = await add_agent(res, instance)
    llm.script(Reply(text="priced", input_tokens=1000, output_tokens=100))
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    usage = (await turn_of(res, turn.id)).usage
    assert usage == {
        "input_tokens": 1000,
        "output_tokens": 100,
        "estimated": False,
        "cost_nanos": 1000 * 3000 + 100 * 15000,  # $0.0045
    }


async def test_a_server_that_sends_no_usage_is_counted_and_marked_estimated(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm, "openai-compatible", api_key=None)
    agent_id = await add_agent(res, instance, "openai-compatible", model_id="my-local-model")
    answer = "twelve characters " * 4
    llm.script(Reply(text=answer, omit_usage=True))
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    usage = (await turn_of(res, turn.id)).usage
    assert usage is not None and usage["estimated"] is True
    assert (
        usage["input_tokens"] > 0 and usage["output_tokens"] == len("twelve characters " * 4) // 4
    )
    assert "cost_nanos" not in usage  # no price known: no cost, never a silent 0


# -- cooldowns -------------------------------------------------------------------------


async def test_a_429_puts_the_pair_in_a_cooldown_every_worker_honours_without_a_slot(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    first = await add_agent(res, instance)
    second = await add_agent(res, instance)
    llm.script(Reply(error_status=429, error_headers={"retry-after": "60"}))
    waiting = await send(res, first, "first")
    blocked = await send(res, second, "second")

    started = time.time()
    await run(res, first, worker="worker-a")
    await run(res, second, worker="worker-b")

    for turn_id, agent in ((waiting.id, first), (blocked.id, second)):
        turn = await turn_of(res, turn_id)
        assert turn.status == "queued" and turn.waiting is not None
        assert turn.waiting["reason"] == "provider_cooldown"
        assert 59 <= turn.waiting["until"] - started <= 61
        view = await AgentRecords(res.db, res.registry).view(agent)
        assert view.status == "running"  # waiting counts as running
    assert (await turn_of(res, waiting.id)).provider_attempts == 1
    assert (await turn_of(res, blocked.id)).provider_attempts == 0  # waiting spends none
    assert len(llm.requests) == 1  # the second agent never called the provider
    other_worker = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        until = await Throttle(other_worker).cooldown_until(instance, "claude-sonnet-4-6")
    finally:
        await other_worker.aclose()
    assert until is not None and until > started + 59
    states = [e for e in res.sink.of_type("agent_state") if e.data["state"] == "waiting"]  # type: ignore[attr-defined]
    assert {e.data["reason"] for e in states} == {"provider_cooldown"}

    # The cooldown ends: the parked turns run, and the attempt spent is forgotten.
    await res.redis.delete(f"bobbin:cooldown:{instance}:claude-sonnet-4-6")
    await res.db.run(lambda s: s.execute(update(Turn.__table__).values(not_before=time.time())))  # type: ignore[attr-defined]
    done = await run_until_done(res, first, waiting.id)
    assert done.status == "completed" and done.waiting is None and done.provider_attempts == 0
    assert (await run_until_done(res, second, blocked.id)).status == "completed"


async def test_throttled_answers_spend_the_calls_attempts_across_waits(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    llm.script(Reply(error_status=529, error_headers={"retry-after": "0.4"}), times=None)
    turn = await send(res, agent_id, "hello")

    failed = await run_until_done(res, agent_id, turn.id)

    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "provider_error" and failed.error["retryable"] is True
    assert len(llm.requests) == 3  # FAST_RETRY's attempts, each after a wait without a slot


async def test_a_short_wait_is_slept_in_place(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    llm.script(Reply(error_status=429, error_headers={"retry-after-ms": "100"}))
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    done = await turn_of(res, turn.id)
    assert done.status == "completed" and len(llm.requests) == 2


# -- limits ----------------------------------------------------------------------------


async def test_limits_hold_across_workers_with_a_bucket_of_one_seconds_share(
    res: Resources,
) -> None:
    limits = {
        "requests_per_minute": 120,
        "max_concurrent_requests": 1,
        "per_model": {"m": {"output_tokens_per_minute": 600}},
    }
    worker_a, worker_b = (aioredis.Redis.from_url(TEST_REDIS_URL) for _ in range(2))
    try:
        a, b = Throttle(worker_a), Throttle(worker_b)
        cost = {"requests": 1, "input_tokens": 10, "output_tokens": 5}
        first = await a.book("pi", "m", limits, cost)
        second = await b.book("pi", "m", limits, cost)  # the burst is 2 requests, not 120
        third = await a.book("pi", "m", limits, cost)  # booked: its slot half a second on
        fourth = await b.book("pi", "other", limits, cost)  # and the next one's after it
        in_flight = await a.enter(first)
        crowded = await b.enter(second)  # one call in flight at most, cluster-wide
        await a.settle(first, {"requests": 1, "input_tokens": 10, "output_tokens": 5})
        freed = await b.enter(second)
    finally:
        await worker_a.aclose()
        await worker_b.aclose()

    assert first.wait_s == 0 and second.wait_s == 0
    assert 0.4 < third.wait_s <= 0.5  # 2 requests a second refill
    assert 0.9 < fourth.wait_s <= 1.0
    assert in_flight is None and isinstance(crowded, Refused) and freed is None


async def test_while_redis_is_away_calls_go_unthrottled_instead_of_failing() -> None:
    away = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    throttle = Throttle(away)
    limits = {"requests_per_minute": 60, "max_concurrent_requests": 1}
    try:
        assert await throttle.cooldown_until("inst", "m") is None
        admission = await throttle.book("inst", "m", limits, {"requests": 1})
        assert admission.wait_s == 0 and admission.buckets == []
        assert await throttle.enter(admission) is None
        await throttle.settle(admission, {"requests": 1})
        until = await throttle.cool_down("inst", "m", 5)
        assert 4 < until - time.time() <= 5  # this call still waits the provider's wait
    finally:
        await away.aclose()


async def test_a_turn_over_a_limit_waits_and_then_runs(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    await res.db.run(
        lambda s: s.execute(
            update(ProviderInstance.__table__).values(limits={"requests_per_minute": 60})  # type: ignore[attr-defined]
        )
    )
    agent_id = await add_agent(res, instance)
    turns = [await send(res, agent_id, f"message {i}") for i in range(3)]

    await run(res, agent_id)  # the bucket holds one request: the second turn waits

    second = await turn_of(res, turns[1].id)
    assert second.status == "queued" and second.waiting is not None
    assert second.waiting["reason"] == "rate_limit"
    for turn in turns:
        assert (await run_until_done(res, agent_id, turn.id)).status == "completed"


# -- budgets ---------------------------------------------------------------------------


async def test_concurrent_reservations_never_overrun_a_budget(res: Resources) -> None:
    budget = [budgets.Budget("scope", 5_000, "total"), budgets.Budget("project", 50_000, "day")]

    async def reserve(i: int) -> str:
        try:
            await res.db.run(budgets.reserve, budget, 1_000, f"turn-{i}", 60)
            return "reserved"
        except budgets.Blocked:
            return "blocked"

    outcomes = await asyncio.gather(*(reserve(i) for i in range(40)))

    assert outcomes.count("reserved") == 5
    spend = await res.db.read(lambda s: s.get(budgets.BudgetSpend, ("scope", "total")))
    assert spend is not None and spend.reserved_nanos == 5_000 and spend.spent_nanos == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_reservations_settlements_and_releases_at_once_never_deadlock(
    res: Resources,
) -> None:
    """Calls of one session reserve, settle and are swept at the same time, each touching
    the session's and the project's spend rows: every one of them commits."""
    budget = [budgets.Budget("ses_x", 10**12, "total"), budgets.Budget("prj_x", 10**12, "total")]

    async def call(i: int) -> None:
        for _ in range(5):
            reservation = await res.db.run(budgets.reserve, budget, 1_000, f"turn-{i}", 60)
            await res.db.run(budgets.settle, reservation, 400)

    async def sweep() -> None:
        for _ in range(20):
            held = await res.db.read(budgets.expired_holds, time.time() + 3600)
            await res.db.run(budgets.release_holds, held[::-1])  # in whatever order

    await asyncio.gather(*(call(i) for i in range(16)), sweep())

    for scope_id in ("ses_x", "prj_x"):
        spend = await res.db.read(lambda s, k=scope_id: s.get(budgets.BudgetSpend, (k, "total")))
        assert spend is not None and spend.reserved_nanos == 0
        assert spend.spent_nanos == 16 * 5 * 400


async def test_a_budget_fails_a_call_settled_spend_would_overrun(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    session_id = agent_id.rsplit(".", 1)[0]
    # One call's worst case: ~0.01 USD at 4,096 output tokens of $15/Mtok, plus its input.
    await res.db.run(
        lambda s: s.execute(
            update(ChatSession.__table__).values(budget={"max_cost_usd": "0.1", "window": "total"})  # type: ignore[attr-defined]
        )
    )
    llm.script(Reply(text="costly", input_tokens=20_000, output_tokens=2_000), times=None)
    first = await send(res, agent_id, "one")
    second = await send(res, agent_id, "two")

    await run(res, agent_id)

    assert (await turn_of(res, first.id)).status == "completed"  # $0.09 spent
    failed = await turn_of(res, second.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "budget_exceeded" and failed.error["retryable"] is False
    spent = await res.db.read(budgets.spent_usd, session_id, {"window": "total"})
    assert Decimal(spent or "0") == Decimal("0.09")


async def test_a_call_cut_off_by_a_cancel_is_counted_and_settled_against_the_budget(
    res: Resources, llm: FakeLLM
) -> None:
    """The provider bills what it read and streamed before the cancel: Bobbin's estimate of
    it lands in the turn's usage and the session's spend, never a silent 0."""
    instance = await add_instance(res, llm, "anthropic")  # priced: $3 / $15 per Mtok
    agent_id = await add_agent(res, instance)
    session_id = agent_id.rsplit(".", 1)[0]
    await res.db.run(
        lambda s: s.execute(
            update(ChatSession.__table__).values(budget={"max_cost_usd": "1", "window": "total"})  # type: ignore[attr-defined]
        )
    )
    llm.script(Reply(text=" ".join(f"word{i}" for i in range(200)), token_delay_s=0.02))
    turn = await send(res, agent_id, "tell me a long story")
    state = WorkerState(worker_id="w", retry=FAST_RETRY)
    kick = asyncio.create_task(run_kick(res, state, agent_id))
    while len(res.sink.of_type("agent_token")) < 20:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)

    assert state.cancel(turn.id, CancelReason.USER)
    await kick

    cancelled = await turn_of(res, turn.id)
    assert cancelled.status == "cancelled" and cancelled.usage is not None
    assert cancelled.usage["estimated"] is True
    assert cancelled.usage["input_tokens"] > 0 and cancelled.usage["output_tokens"] > 0
    spent = Decimal(await res.db.read(budgets.spent_usd, session_id, {"window": "total"}) or "0")
    assert spent > 0
    assert spent == Decimal(cancelled.usage["cost_nanos"]) / 10**9
    spend = await res.db.read(lambda s: s.get(budgets.BudgetSpend, (session_id, "total")))
    assert spend is not None and spend.reserved_nanos == 0


async def test_an_unpriced_model_under_a_budget_fails_model_price_unknown(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm, "openai-compatible", api_key=None)
    agent_id = await add_agent(res, instance, "openai-compatible", model_id="my-local-model")
    await res.db.run(
        lambda s: s.execute(
            update(Project.__table__).values(budget={"max_cost_usd": "1", "window": "month"})  # type: ignore[attr-defined]
        )
    )
    turn = await send(res, agent_id, "hello")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "model_price_unknown"
    assert llm.requests == []


def test_budget_exceeded_is_a_turn_failure_that_retrying_cannot_mend() -> None:
    assert BudgetExceeded("x").to_dict()["retryable"] is False
