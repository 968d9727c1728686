"""The agent: it creates its own provider, then runs turns from its thread alone.

``AgentConfig`` carries no provider. ``initialize()`` creates one through the
registry (the only creation path) before anything else; until it succeeds
``agent.provider`` raises AgentNotInitialized. A provider that cannot be
made is a typed error, which ``run_turn`` records on the thread and the turn.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from shared.agents.calls import (
    CallResult,
    FlowControl,
    ModelCall,
    TurnMustWait,
    accounted_on_error,
)
from shared.agents.conversation import build_conversation
from shared.agents.recorder import AgentRecorder, Suspension
from shared.configuration import DEFAULT_SYSTEM_PROMPT, Configuration, ModelSettings
from shared.endings import Ending
from shared.errors import (
    AgentNotInitialized,
    BobbinError,
    LeaseLost,
    MaxToolRoundsExceeded,
    ProviderError,
    TurnCancelled,
    TurnNotOpen,
    TurnTimeout,
    WorkingDirectoryUnavailable,
)
from shared.events import Envelope, NewEvent, StoredEvent
from shared.llm import ModelRequest, Provider, ToolCallRequest
from shared.models import Approval, Turn, utcnow
from shared.pricing import Usage
from shared.providers.registry import ProviderRegistry
from shared.providers.retry import RetryPolicy, stream_with_retry
from shared.status import TurnStatus
from shared.tool_calls import open_tool_calls
from shared.tools import ToolContext, ToolExecutor


@dataclass
class AgentConfig:
    """What an agent runs with; never a provider (``Agent.initialize`` makes its own)."""

    thread_id: str
    tool_executor: ToolExecutor
    recorder: AgentRecorder
    registry: ProviderRegistry
    flow: FlowControl
    tool_context: ToolContext
    max_tool_rounds: int = 50
    turn_timeout_s: float = 900
    retry: RetryPolicy = field(default_factory=RetryPolicy)


# A call's output without a setting that says otherwise (a model's own maximum is often
# far more than a turn needs, and a budget reserves the worst case).
DEFAULT_MAX_OUTPUT_TOKENS = 4096


class TurnOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"
    WAITING = "waiting"  # parked, due at ``Agent.parked_until``
    LEASE_LOST = "lease_lost"


class CancelReason(StrEnum):
    USER = "user"  # the turn ends cancelled
    SHUTDOWN = "shutdown"  # the worker stops: the turn goes back to the queue


@dataclass
class _TurnState:
    turn: Turn
    started: float = field(default_factory=time.monotonic)
    streamed: str = ""
    usage: Usage = field(init=False)  # the turn's whole usage: earlier attempts' and this one's
    provider_attempts: int = field(init=False)  # throttled answers the current call spent
    fresh_calls: set[str] = field(default_factory=set)
    noted_ignored: bool = False
    booking: dict[str, Any] | None = field(init=False)  # its limits' slot, if parked for one

    def __post_init__(self) -> None:
        self.usage = Usage.of(self.turn.usage)
        self.provider_attempts = self.turn.provider_attempts
        self.booking = (self.turn.waiting or {}).get("booking")


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.thread_id = config.thread_id
        self._store = config.recorder
        self.context = config.recorder.context
        self._provider: Provider | None = None
        self.cancel_reason: CancelReason | None = None
        self.cancel_seen = False  # a CancelledError reached run_turn: its handling has begun
        self.parked_until: float | None = None

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            raise AgentNotInitialized(f"agent {self.thread_id} has no provider: initialize() it")
        return self._provider

    @property
    def configuration(self) -> Configuration:
        return self.context.configuration

    async def initialize(self, turn: Turn | None = None) -> None:
        """Create the provider first; raises a ProviderError subclass with its code.

        The pair is the turn's pinned one, else the agent's thread metadata, else
        its session's and project's configuration (``AgentContext.provider_target``).
        """
        target = self.context.provider_target(turn)
        self._provider = await self.config.registry.create_provider_from_instance_and_model(
            target.instance_id, target.model_id, prefetched=target.prefetched
        )

    # -- the turn -------------------------------------------------------------

    async def run_turn(self, turn: Turn) -> TurnOutcome:
        """Run (or continue) ``turn`` until it ends or suspends for approval.

        A turn whose cancel was accepted before it ran here (``cancel_reason``
        USER set beforehand, or its row's flag) ends cancelled at once.
        Cancellation with ``cancel_reason`` set runs shielded bookkeeping: USER
        ends the turn cancelled, SHUTDOWN hands it back to the queue.
        """
        state = _TurnState(turn)
        try:
            return await self._run(state)
        except asyncio.CancelledError:  # also when it cut one of _run's own handlers short
            self.cancel_seen = True
            if self.cancel_reason is None:
                raise
            await asyncio.shield(self._on_cancel(state))
            raise

    async def _run(self, state: _TurnState) -> TurnOutcome:
        turn = state.turn
        try:
            if self.cancel_reason is CancelReason.USER or turn.cancel_requested:
                return await self._end(state, Ending.cancelled(usage=self._total_usage(state)))
            await self._start(state)
            budget = self.config.turn_timeout_s - turn.running_s
            try:
                async with asyncio.timeout(max(budget, 0.001)):
                    await self.initialize(turn)
                    return await self._rounds(state)
            except TurnMustWait as wait:  # parked inside this try: a cancel meanwhile is handled
                return await self._park(state, wait)
        except LeaseLost:
            return TurnOutcome.LEASE_LOST
        except TurnNotOpen:  # cancelled on its row before it could start
            return TurnOutcome.CANCELLED
        except TurnCancelled:  # its cancel was accepted while this worker claimed it
            return await self._end(state, self._cancelled(state))
        except TimeoutError:
            message = f"the turn ran longer than {self.config.turn_timeout_s:g} s"
            return await self._fail(state, TurnTimeout(message))
        except BobbinError as exc:
            return await self._fail(state, exc)

    async def _start(self, state: _TurnState) -> None:
        """Set the turn running; raises TurnCancelled when its cancel came first."""
        turn = state.turn
        changes: dict[str, Any] = {"worker_id": self._store.holder}
        if turn.not_before is not None or turn.waiting is not None:  # it was parked
            changes |= {"not_before": None, "waiting": None}
        events: list[NewEvent] = []
        if turn.started_at is None:
            target = self.context.provider_target(turn)  # not pinned yet: the configuration's
            changes |= {
                "started_at": utcnow(),
                "provider_instance_id": target.instance_id,
                "model_id": target.model_id,
            }
            events = self._opening_events(turn.input, (target.instance_id, target.model_id))
        await self._store.start(turn.id, events, changes)
        for column, value in changes.items():
            setattr(turn, column, value)
        turn.status = TurnStatus.RUNNING

    def _opening_events(
        self, user_input: str, pair: tuple[str | None, str | None]
    ) -> list[NewEvent]:
        events: list[NewEvent] = []
        history = self.context.events
        if not any(e.type == "system_prompt" for e in history):
            prompt = self.configuration.system_prompt or DEFAULT_SYSTEM_PROMPT
            events.append(NewEvent.of("system_prompt", content=prompt))
        previous = next((e for e in reversed(history) if e.type == "turn_started"), None)
        if previous is not None:
            before = (previous.data.get("provider_instance_id"), previous.data.get("model_id"))
            if before != pair:
                events.append(
                    NewEvent.of(
                        "local_system_message",
                        content=f"Switched provider from {before[0]}/{before[1]} "
                        f"to {pair[0]}/{pair[1]}.",
                    )
                )
        events.append(NewEvent.of("user_message", content=user_input))
        events.append(NewEvent.of("turn_started", provider_instance_id=pair[0], model_id=pair[1]))
        return events

    def _ensure_workspace(self) -> None:
        workdir = self.config.tool_context.working_directory
        try:
            if not workdir.is_dir():  # a stat: cheaper than a mkdir that fails every turn
                workdir.mkdir(parents=True, exist_ok=True)
            if not os.access(workdir, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(f"no access to {workdir}")
        except OSError as exc:
            raise WorkingDirectoryUnavailable(
                f"the working directory {workdir} cannot be used on this worker: {exc.strerror}"
            ) from exc

    async def _rounds(self, state: _TurnState) -> TurnOutcome:
        self._ensure_workspace()
        while True:
            pending = await self._settle_calls(state)
            if pending:
                if (suspended := await self._suspend(state)) is not None:
                    return suspended
                continue
            if self._rounds_done(state.turn.id) >= self.config.max_tool_rounds:
                raise MaxToolRoundsExceeded(
                    f"the model asked for tools {self.config.max_tool_rounds} rounds in a row"
                )
            text, calls = await self._model_round(state)
            if not calls:
                return await self._complete(state, text)
            await self._record_calls(state, text, calls)

    def turn_events(self, turn_id: str) -> list[StoredEvent]:
        """The events of ``turn_id`` this agent holds (its whole thread is loaded)."""
        return [e for e in self.context.events if e.turn_id == turn_id]

    def _rounds_done(self, turn_id: str) -> int:
        rounds = [e.data["round"] for e in self.turn_events(turn_id) if e.type == "tool_call"]
        return max(rounds, default=0)

    async def _model_round(self, state: _TurnState) -> tuple[str, list[ToolCallRequest]]:
        """One model call, inside the flow control (``shared.agents.calls``); raises
        TurnMustWait when the turn has to wait for its provider or its budget."""
        request = self._request()
        await self._note_ignored(state, request)
        call = ModelCall(
            self.config.flow,
            self.provider,
            request,
            self.context.provider_target(state.turn).instance_id or "",
            self.context.instance_limits(),
            self.context.session_id,
            state.turn.id,
            booking=state.booking,
        )
        state.booking = None
        await call.gate()
        self._state_event(state, "thinking")
        result, reported = CallResult(), None
        state.streamed = ""
        async with accounted_on_error(call, result, state.usage):
            try:
                async for event in stream_with_retry(self.provider, request, self.config.retry):
                    result.answered = True
                    if event.type == "text_delta":
                        result.text += event.text
                        state.streamed = result.text
                        self._store.publish(self._ephemeral(state, "agent_token", text=event.text))
                    elif event.type == "tool_call":
                        result.calls.append(event.call)
                    elif event.type == "usage" and event.reported:
                        reported = (event.input_tokens, event.output_tokens)
            except ProviderError as exc:
                if not exc.throttled:
                    raise
                state.provider_attempts += 1
                await call.release((0, 0))  # refused: it cost its request, and nothing else
                await call.throttled(exc, state.provider_attempts, self.config.retry)
                return await self._model_round(state)  # the wait was slept in place
            state.provider_attempts = 0
            await call.account(result, reported, state.usage)
        return result.text, result.calls

    def _request(self) -> ModelRequest:
        """The next request: the conversation so far, within the model settings in force."""
        conversation = build_conversation(self.context.events)
        settings = self.configuration.model_settings or ModelSettings()
        model = self.provider.model
        max_tokens = settings.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        if model.max_output_tokens:
            max_tokens = min(max_tokens, model.max_output_tokens)
        return ModelRequest(
            model_id=self.provider.model_id,
            system=conversation.system,
            messages=conversation.messages,
            tools=self.config.tool_executor.specs() if model.supports_tools else [],
            max_tokens=max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            stop=settings.stop,
            reasoning_effort=settings.reasoning_effort,
        )

    async def _note_ignored(self, state: _TurnState, request: ModelRequest) -> None:
        """Say once per turn what this model is not sent: settings its provider cannot
        send, and the tools when it cannot use them (it answers without them)."""
        if state.noted_ignored:
            return
        state.noted_ignored = True
        ignored = self.provider.ignored(request)
        no_tools = not self.provider.model.supports_tools and bool(
            self.config.tool_executor.specs()
        )
        if not ignored and not no_tools:
            return
        if any("ignored_settings" in e.data for e in self.turn_events(state.turn.id)):
            return  # said before this turn's wait or approval
        parts = [f"ignores: {', '.join(ignored)}"] if ignored else []
        if no_tools:
            parts.append("cannot use tools, so it answers without them")
        note = NewEvent.of(
            "local_system_message",
            content=f"{self.provider.kind} model {self.provider.model_id} {' and '.join(parts)}.",
            ignored_settings=ignored,
            tools_unsupported=no_tools,
        )
        await self._store.append(state.turn.id, [note])

    async def _record_calls(
        self, state: _TurnState, text: str, calls: list[ToolCallRequest]
    ) -> None:
        """Persist the answer and its calls; requests for calls that need approval too."""
        round_no = self._rounds_done(state.turn.id) + 1
        events = [NewEvent.of("agent_message", content=text)] if text else []
        approvals: list[Approval] = []
        for call in calls:
            call_id = _new_call_id()
            state.fresh_calls.add(call_id)
            events.append(
                NewEvent.of(
                    "tool_call",
                    tool_call_id=call_id,
                    provider_call_id=call.id,
                    tool=call.name,
                    arguments=call.arguments,
                    round=round_no,
                )
            )
            if self._policy(call.name) == "ask":
                events.append(
                    NewEvent.of(
                        "tool_approval_request",
                        tool_call_id=call_id,
                        tool=call.name,
                        arguments=call.arguments,
                    )
                )
                approvals.append(
                    Approval(
                        agent_id=self.thread_id,
                        tool_call_id=call_id,
                        turn_id=state.turn.id,
                        session_id=self.context.session_id,
                        tool=call.name,
                        arguments=call.arguments,
                    )
                )
        state.streamed = ""
        await self._store.append(state.turn.id, events, approvals=approvals)
        # Requests the session granted meanwhile were decided in that transaction.

    def _policy(self, tool: str) -> str:
        policy = self.config.tool_executor.policy(tool)
        if policy == "ask" and tool in self.context.grants:
            return "allow"
        return policy

    async def _settle_calls(self, state: _TurnState) -> bool:
        """Give every call of the turn its result where possible; True if any is pending."""
        events = self.turn_events(state.turn.id)
        open_calls = open_tool_calls(events)
        if not open_calls:
            return False
        requested = {e.data["tool_call_id"] for e in events if e.type == "tool_approval_request"}
        responded = {e.data["tool_call_id"] for e in events if e.type == "tool_approval_response"}
        decisions = await self._store.decisions(state.turn.id) if requested else {}
        pending = False
        for call in open_calls:
            call_id = call["tool_call_id"]
            if call_id in requested:
                decision = decisions.get(call_id)
                if decision is None:
                    pending = True
                    continue
                if call_id not in responded:
                    state.fresh_calls.add(call_id)
                    await self._store.append(
                        state.turn.id,
                        [
                            NewEvent.of(
                                "tool_approval_response", tool_call_id=call_id, decision=decision
                            )
                        ],
                    )
                verdict = "deny" if decision == "deny" else "allow"
            else:
                verdict = "deny" if self._policy(call["tool"]) == "deny" else "allow"
            await self._settle_one(state, call, verdict)
        return pending

    async def _settle_one(self, state: _TurnState, call: dict[str, Any], verdict: str) -> None:
        call_id, tool = call["tool_call_id"], call["tool"]
        if verdict == "deny":
            status, content = "denied", "The tool call was denied by policy or by the user."
        elif call_id in state.fresh_calls or self.config.tool_executor.is_reading(tool):
            self._state_event(state, "tool_execution")
            result = await self.config.tool_executor.execute(
                tool, call["arguments"], self.config.tool_context
            )
            status, content = result.status, result.content
        else:  # a write that may have half-run on a lost worker: never run it twice
            status, content = "aborted", "The worker running this call was lost."
        await self._store.append(
            state.turn.id,
            [NewEvent.of("tool_result", tool_call_id=call_id, status=status, content=content)],
        )

    async def _suspend(self, state: _TurnState) -> TurnOutcome | None:
        """Suspend for approval, unless every decision is already in (None: go on) or the
        turn was cancelled meanwhile (it ends cancelled)."""
        self._state_event(state, "awaiting_approval")
        suspension = await self._store.suspend(
            state.turn.id, self._running_s(state), self._total_usage(state)
        )
        if suspension is Suspension.CANCELLED:
            return await self._end(state, self._cancelled(state))
        return TurnOutcome.AWAITING_APPROVAL if suspension is Suspension.SUSPENDED else None

    async def _park(self, state: _TurnState, wait: TurnMustWait) -> TurnOutcome:
        """Hand the turn back to the queue until ``wait.due``, releasing its lease and its
        worker slot; a turn cancelled meanwhile ends cancelled instead."""
        self._state_event(state, "waiting", reason=wait.reason)
        parked = await self._store.park(
            state.turn.id,
            wait,
            self._running_s(state),
            self._total_usage(state),
            state.provider_attempts,
        )
        if not parked:
            return await self._end(state, self._cancelled(state))
        self.parked_until = wait.due
        return TurnOutcome.WAITING

    async def _complete(self, state: _TurnState, text: str) -> TurnOutcome:
        ending = Ending.completed(text, self._total_usage(state), self._running_s(state))
        return await self._end(state, ending, uninterrupted=True)

    async def _fail(self, state: _TurnState, error: BobbinError) -> TurnOutcome:
        ending = Ending.failed(
            error,
            streamed=state.streamed,
            usage=self._total_usage(state),
            running_s=self._running_s(state),
        )
        try:  # called from run_turn's handlers: what this raises would escape them
            return await self._end(state, ending)
        except LeaseLost:
            return TurnOutcome.LEASE_LOST
        except TurnNotOpen:  # cancelled on its row before it could start
            return TurnOutcome.CANCELLED

    async def _on_cancel(self, state: _TurnState) -> None:
        try:
            shutdown = self.cancel_reason == CancelReason.SHUTDOWN
            if shutdown and await self._store.requeue(
                state.turn.id, self._running_s(state), self._total_usage(state)
            ):
                return
            await self._end(state, self._cancelled(state))
        except (LeaseLost, TurnNotOpen):
            pass

    def _cancelled(self, state: _TurnState) -> Ending:
        return Ending.cancelled(
            streamed=state.streamed,
            usage=self._total_usage(state),
            running_s=self._running_s(state),
        )

    async def _end(
        self, state: _TurnState, ending: Ending, *, uninterrupted: bool = False
    ) -> TurnOutcome:
        """Commit the turn's ending; a turn that never started gets its closing event alone.

        The turn's open calls are read by the closing transaction itself unless the
        turn went ``uninterrupted`` (a completion): a timeout or a cancel may have cut
        an append whose transaction still committed, which this agent's copy misses.
        """
        state.streamed = ""
        if state.provider_attempts != state.turn.provider_attempts:
            ending = replace(ending, provider_attempts=state.provider_attempts)
        started = state.turn.started_at is not None
        known = self.turn_events(state.turn.id) if uninterrupted else None
        status = await self._store.end_turn(state.turn.id, ending, known if started else [])
        return TurnOutcome(status)

    @staticmethod
    def _total_usage(state: _TurnState) -> dict[str, Any]:
        return state.usage.as_dict()

    @staticmethod
    def _running_s(state: _TurnState) -> float:
        return state.turn.running_s + (time.monotonic() - state.started)

    def _ephemeral(self, turn: _TurnState, type_: str, **data: Any) -> Envelope:
        return Envelope.ephemeral(
            type_,
            session_id=self.context.session_id,
            agent_id=self.thread_id,
            turn_id=turn.turn.id,
            **data,
        )

    def _state_event(self, turn: _TurnState, value: str, **detail: Any) -> None:
        self._store.publish(self._ephemeral(turn, "agent_state", state=value, **detail))


def _new_call_id() -> str:
    return "tc_" + secrets.token_hex(8)
