"""One model call of a turn, inside the cluster's flow control (docs/flow-control.md).

Before the call: the instance and model's cooldown (``shared.throttle``), its
limits (token buckets, concurrency) and the budgets of the turn's session and
project (``shared.budgets``: the call's worst case reserved). What stands in
the way makes the turn wait without its worker slot or its lease: it raises
``TurnMustWait`` and the agent parks the turn (queued, with a due time in its
row) for the sweeper or a short timer to kick. After the call: its usage,
counted by Bobbin when the server sent none (``estimated``), its cost at the
model's prices, the buckets given back what it did not use, the reservation
settled. A throttled answer (429, 503, 529) starts the pair's cooldown for
every worker and spends one of the call's attempts, kept on the turn across
waits; waiting spends none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shared import budgets
from shared.db import Database
from shared.errors import ModelPriceUnknown, ProviderError
from shared.llm import ModelRequest, Provider, ToolCallRequest
from shared.pricing import Usage, cost_nanos
from shared.providers.base import estimate_text_tokens
from shared.providers.retry import RetryPolicy
from shared.throttle import Admission, Throttle

# Waits this short are slept in place: a park costs more (transactions, a kick).
SLEEP_IN_PLACE_S = 0.25
# How soon a call blocked only by other calls' budget reservations looks again.
BUDGET_RECHECK_S = 2.0
HOLD_MARGIN_S = 60.0


class TurnMustWait(Exception):  # noqa: N818 (a control flow, not a failure)
    """The turn cannot call its provider yet: park it until ``due`` (epoch seconds).

    ``until`` is what clients are told (None: not known, such as a budget's
    reservations); ``reason`` is one of API.md's waiting reasons.
    """

    def __init__(
        self,
        reason: str,
        until: float | None,
        due: float,
        *,
        booking: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason, self.until, self.due = reason, until, due
        self.booking = booking  # the limits' tokens already taken for its slot


@dataclass(frozen=True)
class FlowControl:
    """What a worker's calls share: the limits in Redis and the budgets in the database."""

    throttle: Throttle
    db: Database
    hold_s: float  # a budget reservation outlives a call by no more than its turn's timeout


@dataclass
class CallResult:
    text: str = ""
    calls: list[ToolCallRequest] = field(default_factory=list)
    answered: bool = False  # the provider began its answer: it bills this call


@dataclass
class ModelCall:
    """One call: ``gate()`` before it, ``account()`` after it (also when it failed)."""

    flow: FlowControl
    provider: Provider
    request: ModelRequest
    instance_id: str
    limits: dict[str, Any]
    session_id: str
    turn_id: str
    booking: dict[str, Any] | None = None  # a parked turn's slot, booked before it parked
    admission: Admission | None = None
    reservation: budgets.Reservation | None = None
    input_estimate: int = 0
    settled: bool = False  # counted, or given back: once

    async def gate(self) -> None:
        """Raises TurnMustWait, BudgetExceeded or ModelPriceUnknown."""
        throttle, model = self.flow.throttle, self.provider.model_id
        until = await throttle.cooldown_until(self.instance_id, model)
        if until is not None:  # a booked slot waits with the turn
            await _wait_or_park("provider_cooldown", until, until, self.booking)
            return await self.gate()
        self.input_estimate = self.provider.estimate_tokens(self.request)
        if self.booking is not None:  # taken when the turn was parked for its slot
            admission = Admission.booked(self.booking)
            throttle.concurrency(admission, self.instance_id, model, self.limits)
            self.booking = None
        else:
            cost = {
                "requests": 1,
                "input_tokens": self.input_estimate,
                "output_tokens": self.request.max_tokens,
            }
            admission = await throttle.book(self.instance_id, model, self.limits, cost)
            if admission.wait_s > SLEEP_IN_PLACE_S:
                due = time.time() + admission.wait_s
                raise TurnMustWait("rate_limit", due, due, booking=admission.booking())
            await asyncio.sleep(admission.wait_s)
        self.admission = admission
        if (refused := await throttle.enter(admission)) is not None:
            await self.release()
            due = time.time() + refused.wait_s
            raise TurnMustWait("rate_limit", due, due)
        try:
            await self._reserve()
        except BaseException:
            await asyncio.shield(self.release())  # a repeated cancel must not cut it short
            raise
        return None

    async def _reserve(self) -> None:
        found = await self.flow.db.read(budgets.budgets_of, self.session_id)
        if not found:
            return
        worst = cost_nanos(self.provider.model, self.input_estimate, self.request.max_tokens)
        if worst is None:
            raise ModelPriceUnknown(
                f"a budget applies and model {self.provider.model_id!r} has no known price: "
                "declare its cost_per_mtok_in and cost_per_mtok_out on the provider instance"
            )
        try:
            self.reservation = await self.flow.db.run(
                budgets.reserve, found, worst, self.turn_id, self.flow.hold_s + HOLD_MARGIN_S
            )
        except budgets.Blocked:
            raise TurnMustWait("budget_reserved", None, time.time() + BUDGET_RECHECK_S) from None

    async def account(
        self, result: CallResult, reported: tuple[int, int] | None, usage: Usage
    ) -> None:
        """Count the call into ``usage`` and settle what ``gate`` took; ``reported`` is the
        server's (input, output) tokens, None when it sent none (Bobbin counts them)."""
        if self.settled:
            return
        if reported is None:
            spoken = result.text + "".join(
                f"{c.name}{json.dumps(c.arguments)}" for c in result.calls
            )
            tokens = (self.input_estimate, estimate_text_tokens(spoken) if spoken else 0)
        else:
            tokens = reported
        cost = cost_nanos(self.provider.model, *tokens)
        usage.add(*tokens, cost, estimated=reported is None)
        await self.release(tokens, cost or 0)

    async def release(self, tokens: tuple[int, int] | None = None, spent_nanos: int = 0) -> None:
        """Give back what the call did not use: all of it when it was never sent
        (``tokens`` None), else all but its request and ``tokens``."""
        self.settled = True
        if self.admission is not None:
            input_tokens, output_tokens = tokens or (0, 0)
            requests = 0 if tokens is None else 1
            used = {
                "requests": requests,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
            }
            await self.flow.throttle.settle(self.admission, used)
            self.admission = None
        if self.reservation is not None:
            await self.flow.db.run(budgets.settle, self.reservation, spent_nanos)
            self.reservation = None

    async def throttled(self, error: ProviderError, attempts: int, retry: RetryPolicy) -> None:
        """A 429/503/529: start the pair's cooldown for every worker, then wait (raises
        TurnMustWait) unless this was the call's last attempt (then the error stands)."""
        wait_s = error.retry_after_s if error.retry_after_s is not None else retry.delay_s(attempts)
        until = await self.flow.throttle.cool_down(self.instance_id, self.provider.model_id, wait_s)
        if attempts >= retry.max_attempts:
            raise error
        await _wait_or_park("provider_cooldown", until, until)


async def _wait_or_park(
    reason: str, until: float, due: float, booking: dict[str, Any] | None = None
) -> None:
    """Sleep a wait too short to be worth a park; else raise TurnMustWait."""
    remaining = due - time.time()
    if remaining > SLEEP_IN_PLACE_S:
        raise TurnMustWait(reason, until, due, booking=booking)
    await asyncio.sleep(max(0.0, remaining))


@contextlib.asynccontextmanager
async def accounted_on_error(
    call: ModelCall, result: CallResult, usage: Usage
) -> AsyncIterator[None]:
    """Settle a call that did not finish. A provider bills what it read and wrote before
    a cancel, a timeout or an error mid-answer: Bobbin counts that (estimated) into the
    turn's usage and the budgets. A refusal before any answer (an HTTP error) costs
    nothing, and the call gives back everything it took."""
    try:
        yield
    except BaseException as exc:
        refused = isinstance(exc, ProviderError) and not result.answered
        with contextlib.suppress(Exception):
            # Shielded: a turn's cancel is repeated until the agent has seen it
            # (workers/runner.py), and this settling must finish all the same.
            if refused:
                await asyncio.shield(call.release((0, 0)))
            else:
                await asyncio.shield(call.account(result, None, usage))
        raise
