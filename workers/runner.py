"""One kick: take the agent's lease, run its head turn, release, re-check.

A kick names the agent, not the turn. A kick that finds the lease held does
nothing: the holder re-checks for open turns in a read that starts after its
release committed, so no turn is stranded between two kicks, and runs the
turn it finds in the same kick (docs/decisions.md: a kick through the queue
costs more than the turn), unless a peer worker carries fewer agents: then
it kicks the agent through the queue (``workers.balance``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session

from shared.agents.agent import Agent, CancelReason, TurnOutcome
from shared.agents.context import AgentContext, EventCache, load_agent_context
from shared.agents.factory import rehydrate_agent
from shared.db import Database
from shared.endings import Ending
from shared.errors import BobbinError, LeaseLost, WorkerLost
from shared.events import StoredEvent
from shared.leases import Lease, acquire_lease, renew_lease
from shared.logging import log_context
from shared.models import Turn
from shared.providers.retry import RetryPolicy
from shared.resources import Resources
from shared.status import TurnStatus, runnable
from shared.threads import ThreadWriter, events_after, has_runnable_turn, requeue_turn
from shared.turns import cancel_requested, head_open_turn
from workers.balance import LoadBoard
from workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)
# Events a worker keeps between an agent's turns (~60 MB of typical events).
CACHED_EVENTS = 100_000
RECANCEL_S = 0.5  # how soon a cancel the agent has not seen is delivered again


@dataclass
class ActiveTurn:
    agent: Agent
    task: asyncio.Task[TurnOutcome]


@dataclass
class WorkerState:
    """What one worker process knows of the turns it carries right now."""

    worker_id: str
    active: dict[str, ActiveTurn] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    stopping: bool = False  # shutting down: take no new lease
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    events: EventCache = field(default_factory=lambda: EventCache(CACHED_EVENTS))
    # The default never hands a backlog off: a worker without peers (tests).
    board: LoadBoard = field(default_factory=lambda: LoadBoard("", 0))
    # Kicks an agent whose turn was parked when it is due (epoch seconds); a worker
    # without it (tests) leaves that to the sweeper.
    wake: Callable[[str, float], None] = lambda agent_id, due: None

    def cancel(self, turn_id: str, reason: CancelReason) -> bool:
        active = self.active.get(turn_id)
        if active is None:  # not running here; a turn about to start reads its flag
            return False
        if active.agent.cancel_reason is None:
            active.agent.cancel_reason = reason
            _cancel_until_seen(active)
        return True

    def cancel_all(self, reason: CancelReason) -> None:
        if reason is CancelReason.SHUTDOWN:
            self.stopping = True
        for turn_id in list(self.active):
            self.cancel(turn_id, reason)


def _cancel_until_seen(active: ActiveTurn) -> None:
    """Cancel the turn's task, again every ``RECANCEL_S`` until the agent has seen it.

    asyncio delivers a cancel once, and the HTTP client's stack can swallow it
    (seen while a request was being set up: the turn then waited for the model's
    whole answer). Once the agent handles its cancel it is left to finish that.
    """
    if active.task.done() or active.agent.cancel_seen:
        return
    active.task.cancel()
    asyncio.get_running_loop().call_later(RECANCEL_S, _cancel_until_seen, active)


async def run_kick(resources: Resources, state: WorkerState, agent_id: str) -> None:
    """Run the agent's turns while it has runnable ones and this worker can take its lease."""
    with log_context(agent_id=agent_id, worker_id=state.worker_id), state.board.carrying():
        await _run_turns(resources, state, agent_id)


async def _run_turns(resources: Resources, state: WorkerState, agent_id: str) -> None:
    db, settings = resources.db, resources.settings
    writer: ThreadWriter | None = None  # set while a lease is held over between turns
    try:
        while not state.stopping:
            known = state.events.take(agent_id)
            held = writer.next_turn() if writer is not None else None
            claim = await db.offload(
                _claim, db, agent_id, state.worker_id, settings.lease_s, known, held
            )
            if claim is None:
                state.events.keep(agent_id, known)
                return  # the holder re-checks after its release
            if writer is None:
                writer = ThreadWriter(
                    db,
                    claim.lease,
                    resources.sink,
                    # Keep the lease for the next turn unless this worker stops or a
                    # lighter peer should take the agent (the re-check then kicks it).
                    hold=lambda: not state.stopping and not state.board.has_lighter_peer(),
                    hold_s=settings.lease_s,
                )
            try:
                await _run_head(resources, state, writer, claim)
            finally:
                if not writer.held_over:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(writer.release())
                state.events.keep(agent_id, claim.thread.events if claim.thread else known)
            if writer.held_over:
                continue  # the next turn, under the same lease
            runnable = writer.runnable_after_release
            writer = None
            if runnable is None:  # the release failed: read after it instead
                runnable = await db.read(has_runnable_turn, agent_id)
            if not runnable or await state.board.hand_off(agent_id):
                return  # nothing to run, or a lighter worker takes the agent from the queue
    finally:
        if writer is not None:  # held over, then stopped or failed before the next turn
            with contextlib.suppress(Exception):
                await asyncio.shield(writer.release())


@dataclass
class _Claim:
    lease: Lease
    turn: Turn | None
    thread: AgentContext | None


def _claim(
    db: Database,
    agent_id: str,
    holder: str,
    lease_s: float,
    known: list[StoredEvent],
    held: Lease | None,
) -> _Claim | None:
    """Take the lease (unless ``held`` over from the last turn) and read the head turn and
    the thread, in one transaction on the database's thread.

    ``known`` is the thread as this worker last saw it; it is used only when it
    is a prefix of the committed thread.
    """
    if held is not None:
        return db.read_sync(_read_head, held, known)
    return db.run_sync(_take_and_read, agent_id, holder, lease_s, known)


def _take_and_read(
    session: Session, agent_id: str, holder: str, lease_s: float, known: list[StoredEvent]
) -> _Claim | None:
    lease = acquire_lease(session, agent_id, holder, lease_s)
    return None if lease is None else _read_head(session, lease, known)


def _read_head(session: Session, lease: Lease, known: list[StoredEvent]) -> _Claim:
    turn = head_open_turn(session, lease.thread_id)
    if turn is None or not (
        turn.status == TurnStatus.RUNNING
        or runnable(turn.status, turn.not_before, turn.cancel_requested)
    ):
        return _Claim(lease, None, None)
    if known and known[-1].seq > lease.seq:
        known = []
    return _Claim(lease, turn, load_agent_context(session, lease.thread_id, known, turn))


async def _run_head(
    resources: Resources, state: WorkerState, writer: ThreadWriter, claim: _Claim
) -> None:
    await _publish_unpublished(resources, writer)
    turn = claim.turn
    if turn is None:
        return
    # Every line logged for this turn, in this task and the ones it starts, names it
    # (beside the agent and worker ids that run_kick set).
    with log_context(turn_id=turn.id):
        await _run_turn(resources, state, writer, claim, turn)


async def _run_turn(
    resources: Resources, state: WorkerState, writer: ThreadWriter, claim: _Claim, turn: Turn
) -> None:
    assert claim.thread is not None
    # A running head turn: its worker was lost before the sweeper noticed.
    lost = turn.status == TurnStatus.RUNNING
    if lost and not await _recover_lost_attempt(resources, writer, turn):
        state.metrics.turn_ran(TurnStatus.FAILED, None)  # its running time died with its worker
        return
    agent = await rehydrate_agent(resources, writer, state.retry, claim.thread)
    if state.stopping:
        # The hand-back came while this turn was being claimed, so it did not see it: it
        # stays queued for another worker (the lease is released by the caller), kicked
        # now. Checked with no await before the turn is registered, where the hand-back
        # would see it.
        state.wake(turn.agent_id, time.time())
        return
    if turn.started_at is None:
        state.metrics.turn_first_started(turn.created_at)
    running_before_s, began = turn.running_s, time.monotonic()
    if turn.cancel_requested:
        agent.cancel_reason = CancelReason.USER  # the agent ends the turn cancelled at once
    task = asyncio.create_task(agent.run_turn(turn), name=f"turn-{turn.id}")
    state.active[turn.id] = ActiveTurn(agent, task)
    renewer = asyncio.create_task(_keep_lease(resources, state, writer.lease, turn.id))
    status: str = TurnStatus.FAILED
    try:
        outcome = await task
        status = outcome.value
        log.info("turn %s ended %s", turn.id, status)
        if outcome is TurnOutcome.WAITING and agent.parked_until is not None:
            state.wake(agent.thread_id, agent.parked_until)
    except asyncio.CancelledError:
        kick = asyncio.current_task()
        if kick is not None and kick.cancelling():  # this kick itself was cancelled
            task.cancel()
            raise
        if agent.cancel_reason is None:  # the renewer lost the lease: another holder runs it
            log.warning("turn %s stopped: its lease was taken over", turn.id)
            status = "lease_lost"
        else:
            user = agent.cancel_reason is CancelReason.USER
            status = TurnStatus.CANCELLED if user else TurnStatus.QUEUED
    except Exception:
        log.exception("turn %s crashed", turn.id)
        await _fail_crashed(writer, turn)
    finally:
        renewer.cancel()
        state.active.pop(turn.id, None)
    state.metrics.turn_ran(status, running_before_s + time.monotonic() - began)


async def _keep_lease(resources: Resources, state: WorkerState, lease: Lease, turn_id: str) -> None:
    """Renew every ``lease_renew_s``; a failed renewal stops the attempt at once."""
    settings = resources.settings
    while True:
        await asyncio.sleep(settings.lease_renew_s)
        try:
            lease.valid_until = await resources.db.run(renew_lease, lease, settings.lease_s)
        except LeaseLost:
            active = state.active.get(turn_id)
            if active is not None:
                active.task.cancel()
            return
        except BobbinError:
            continue  # database briefly away: the lease still has time
        except Exception:  # whatever it was, the next renewal tries again
            log.exception("renewing the lease of turn %s failed", turn_id)
            continue
        if await resources.db.read(cancel_requested, turn_id):  # in case Redis missed it
            state.cancel(turn_id, CancelReason.USER)


async def _publish_unpublished(resources: Resources, writer: ThreadWriter) -> None:
    """Publish what a dead holder committed but never published."""
    lease = writer.lease
    if lease.published_seq >= lease.seq:
        return
    rows = await resources.db.read(
        events_after, lease.thread_id, lease.published_seq, lease.seq - lease.published_seq
    )
    await resources.sink.publish([row.envelope() for row in rows])
    writer.published_seq = lease.seq


async def _recover_lost_attempt(resources: Resources, writer: ThreadWriter, turn: Turn) -> bool:
    """Count the lost attempt and hand the turn back to run now (True); the last allowed
    attempt ends it ``worker_lost``, and a turn whose cancel was accepted ends cancelled."""
    turn.attempt += 1
    if turn.attempt >= resources.settings.max_attempts:
        error = WorkerLost(f"the turn's worker was lost {turn.attempt} times")
        ending = Ending.failed(error, attempt=turn.attempt)
    elif await writer.transact(_requeue_lost, turn.id, turn.attempt):
        turn.status = TurnStatus.QUEUED
        return True
    else:  # its cancel was accepted
        ending = Ending.cancelled()
    await writer.end_turn(turn.id, ending)  # its open calls read in the transaction
    return False


def _requeue_lost(session: Session, _: ThreadWriter, turn_id: str, attempt: int) -> bool:
    return requeue_turn(session, turn_id, {"attempt": attempt})


async def _fail_crashed(writer: ThreadWriter, turn: Turn) -> None:
    error = BobbinError("the turn stopped on an internal error; see the worker's log")
    with contextlib.suppress(BobbinError):
        await writer.end_turn(turn.id, Ending.failed(error))  # its calls read in the tx
