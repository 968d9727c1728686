"""The worker process's event loop: one asyncio loop on a dedicated thread.

Celery's ``threads`` pool hands each kick's coroutine to this loop and waits
for its outcome, so one process carries many turns while they wait on
models. The loop is uvloop's: a turn's work is mostly callbacks and socket
I/O on it. Resources are opened on the loop once (``worker_init``) and closed
on ``worker_shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop
from celery import Celery
from redis.exceptions import RedisError

from shared.agents.agent import CancelReason
from shared.keys import cancel_channel, kick_pending
from shared.queue import KickSender
from shared.resources import Resources, open_resources
from shared.settings import Settings
from workers.balance import LoadBoard
from workers.instrumentation import ProviderMetrics
from workers.metrics import port_from_env
from workers.runner import WorkerState, run_kick
from workers.sweeper import sweep_forever

log = logging.getLogger(__name__)
T = TypeVar("T")
# The collector's thresholds (Python's are 700, 10, 10). With 400 turns in flight a
# young collection came every few hundred allocations and full ones walked every
# turn's objects: 0.21 s of a 5 s round of benchmark 3, 0.07 s with these.
GC_THRESHOLDS = (20_000, 20, 20)
WAKE_MARGIN_S = 0.05
STUCK_REPORT_S = 2.0  # a handed-back turn still running this long after is logged with its stack


class WorkerRuntime:
    def __init__(self, settings: Settings, app: Celery, concurrency: int) -> None:
        self.settings = settings
        self.app = app
        self.kicks = KickSender(app)  # the sweeper's and the hand-back's re-kicks
        self.concurrency = concurrency
        worker_id = f"{socket.gethostname()}:{os.getpid()}"
        board = LoadBoard(worker_id, concurrency, kick=self.kicks.kick)
        self.state = WorkerState(worker_id=worker_id, board=board, wake=self._wake)
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="bobbin-loop", daemon=True)
        self._background: list[asyncio.Task[None]] = []
        self._wakes: set[asyncio.Future[bool]] = set()
        self.resources: Resources | None = None
        self._stop_metrics: Callable[[], None] | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self.resources = self.call(
            open_resources(
                self.settings,
                loopback=True,
                concurrency=self.concurrency,
                provider_hook=ProviderMetrics(self.state.metrics),
            )
        )
        self._serve_metrics()
        _report_isolation(self.resources)
        self.call(self._start_background())
        # Everything loaded so far lives as long as the process: keep the collector off it,
        # so rebuilding a long thread costs time linear in its events.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        log.info("worker %s ready (concurrency %d)", self.state.worker_id, self.concurrency)

    def _serve_metrics(self) -> None:
        """Count this worker's turns in flight; serve the metrics if a port is set."""
        metrics = self.state.metrics
        metrics.track_active(lambda: len(self.state.active))
        port = port_from_env()
        if port is not None:
            self._stop_metrics = metrics.serve(port)

    async def _start_background(self) -> None:
        assert self.resources is not None
        self._background = [
            asyncio.create_task(sweep_forever(self.resources, self.kicks), name="sweeper"),
            asyncio.create_task(self._listen_cancels(), name="cancel-listener"),
            asyncio.create_task(self.state.metrics.watch_loop(), name="loop-monitor"),
            asyncio.create_task(self.state.board.post_forever(self.resources.redis), name="loads"),
        ]

    def _wake(self, agent_id: str, due: float) -> None:
        """Kick a parked agent when it is due, if that is soon; the sweeper kicks the rest
        (a timer here would die with this worker, the due time in the database does not)."""
        delay_s = due - time.time()
        if delay_s > self.settings.sweep_interval_s:
            return

        def kick() -> None:
            task = asyncio.ensure_future(self.kicks.rekick(agent_id))
            self._wakes.add(task)
            task.add_done_callback(self._wakes.discard)

        # A little late rather than early: a kick before the due time finds nothing to run.
        self.loop.call_later(max(0.0, delay_s) + WAKE_MARGIN_S, kick)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from a pool thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def run_kick(self, agent_id: str) -> None:
        self.call(self._take_kick(agent_id))

    async def _take_kick(self, agent_id: str) -> None:
        """Drop the agent's kick-pending marker, then run the kick (its claim and turns).

        Deleting first is what makes the sender's de-duplication safe: a sender whose
        ``SET NX`` failed had committed its turn before, and the marker it found is
        deleted here before this claim starts, so the claim sees that turn, or finds
        the lease held and the holder's re-check after its release sees it. A failed
        DEL leaves the marker to its TTL; the sweeper re-kicks regardless of it.
        """
        assert self.resources is not None
        with contextlib.suppress(RedisError, OSError):
            await self.resources.redis.delete(kick_pending(agent_id))
        await run_kick(self.resources, self.state, agent_id)

    async def _listen_cancels(self) -> None:
        assert self.resources is not None
        while True:
            try:
                pubsub = self.resources.redis.pubsub()
                await pubsub.subscribe(cancel_channel())
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        turn_id = message["data"].decode()
                        self.state.cancel(turn_id, CancelReason.USER)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("cancel listener lost Redis (%s); retrying", exc)
                await asyncio.sleep(1)

    def begin_shutdown(self) -> None:
        """On SIGTERM: give turns the grace period, then hand the rest back to the queue."""
        grace = max(self.settings.shutdown_timeout_s - 2.0, 0.5)
        self.loop.call_soon_threadsafe(lambda: self.loop.call_later(grace, self._hand_back))

    def _hand_back(self) -> None:
        agents = [active.agent.thread_id for active in self.state.active.values()]
        # Even with nothing running: a kick claiming a turn now must not start it.
        self.state.cancel_all(CancelReason.SHUTDOWN)
        if not agents:
            return
        log.warning("shutdown grace over: returning %d turns to the queue", len(agents))
        task = asyncio.ensure_future(self._kick_later(agents))
        self._background.append(task)

    async def _kick_later(self, agents: list[str]) -> None:
        handed_back, reported = time.monotonic(), False
        while self.state.active:
            await asyncio.sleep(0.05)
            if not reported and time.monotonic() - handed_back >= STUCK_REPORT_S:
                reported = True  # Celery waits for these turns to stop: say where they are
                for turn_id, active in self.state.active.items():
                    log.warning(
                        "turn %s has not stopped %.0f s after its hand-back:\n%s",
                        turn_id, STUCK_REPORT_S, _stack(active.task),
                    )  # fmt: skip
        for agent_id in agents:
            await self.kicks.rekick(agent_id)  # regardless of any marker

    def stop(self) -> None:
        async def _close() -> None:
            for task in self._background:
                task.cancel()
            for task in self._background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.resources is not None:
                await self.state.board.withdraw(self.resources.redis)
                await self.resources.aclose()

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(_close())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if self._stop_metrics is not None:
            self._stop_metrics()
        self.kicks.close(celery=False)  # the app is the worker's own: Celery closes it


def _stack(task: asyncio.Task[Any]) -> str:
    """Where the task waits, down its chain of awaits (``Task.print_stack`` shows only
    the outermost coroutine's frame)."""
    lines: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return "\n".join(lines)


def _report_isolation(resources: Resources) -> None:
    """Say at start how tool processes run here (shared/tools/sandbox.py)."""
    isolation = resources.isolation
    if isolation.sandbox is not None:
        sandbox = isolation.sandbox
        bound = "a pids cgroup" if sandbox.cgroups else "RLIMIT_NPROC"
        network = "shared" if sandbox.network else "none"
        log.info(
            "tool processes run in bwrap (network %s, at most %d processes by %s)",
            network,
            sandbox.pids_max,
            bound,
        )
    elif isolation.unsandboxed:
        log.warning(
            "BASH RUNS UNSANDBOXED (BOBBIN_TOOL_UNSANDBOXED): commands run as this worker's "
            "user and can read its secrets, its data and every loopback service; no sandbox "
            "can be made here: %s",
            isolation.reason,
        )
    else:
        log.warning(
            "bash is not offered: no sandbox for tool processes can be made here (%s); "
            "see docs/security.md, or set BOBBIN_TOOL_UNSANDBOXED=true to run it unsandboxed",
            isolation.reason,
        )
