"""The chaos run: many messages over many agents while workers die and Redis restarts.

Clients send messages at a steady rate (each with an ``Idempotency-Key``, retried
on a transport error as a real client would), follow every session's event
stream with reconnects, and meanwhile a worker is SIGKILLed every few seconds
(and replaced) and Redis is crashed and restarted empty. Then the run waits
for every accepted message's turn to end and audits the database and the
streams: nothing lost, nothing duplicated, nothing stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.cluster import Cluster, ClusterOptions
from tests.chaos.streams import FollowedStream
from tests.chaos.verify import Audit, Sent, audit, heads, open_turns
from tests.e2e.flows import create_instance, create_session
from tests.fakellm import Reply

FILLER = "the quick brown fox jumps over the lazy dog while the workers come and go"
SEND_TRIES = 8
MAX_SENDS_IN_FLIGHT = 20


@dataclass
class ChaosPlan:
    messages: int = 1000
    agents: int = 50
    agents_per_session: int = 5
    workers: int = 4
    concurrency: int = 20  # turns in flight per worker
    kill_every_s: float = 3.0  # 0: no kills
    max_kills: int = 1000
    redis_restarts: int = 1
    redis_down_s: float = 2.0
    send_rate_per_s: float = 40.0
    tool_share: float = 0.1  # messages whose answer runs a (reading) tool first
    db: str = "sqlite"
    drain_timeout_s: float = 600.0
    seed: int = 7
    lease_s: float = 4.0
    sweep_interval_s: float = 1.0
    llm_latency_s: float = 0.05
    llm_token_delay_s: float = 0.02


@dataclass
class ChaosReport:
    plan: dict[str, Any]
    messages_sent: int = 0
    messages_accepted: int = 0
    send_failures: int = 0
    send_retries: int = 0
    turns_completed: int = 0
    turns_failed: dict[str, int] = field(default_factory=dict)
    turns_cancelled: int = 0
    turns_stuck: int = 0
    turns_recovered: int = 0
    lost_messages: int = 0
    duplicated_events: int = 0
    seq_gaps: int = 0
    session_seq_gaps: int = 0
    order_violations: int = 0
    closing_mismatches: int = 0
    durable_events: int = 0
    stream_events: int = 0
    stream_duplicates: int = 0
    stream_gaps: int = 0
    stream_reconnects: int = 0
    worker_kills: int = 0
    redis_restarts: int = 0
    readyz_down_s: float = 0.0
    send_phase_s: float = 0.0
    time_to_drain_s: float | None = None
    total_s: float = 0.0
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.send_failures
            or self.turns_stuck
            or self.lost_messages
            or self.duplicated_events
            or self.seq_gaps
            or self.session_seq_gaps
            or self.order_violations
            or self.closing_mismatches
            or self.stream_duplicates
            or self.stream_gaps
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"ok": self.ok}, indent=2)

    def table(self) -> str:
        failed = ", ".join(f"{code} {n}" for code, n in sorted(self.turns_failed.items()))
        drain = "not drained" if self.time_to_drain_s is None else f"{self.time_to_drain_s:.1f} s"
        rows = [
            ("messages sent / accepted (202)", f"{self.messages_sent} / {self.messages_accepted}"),
            (
                "send failures (after retries) / retries",
                f"{self.send_failures} / {self.send_retries}",
            ),
            ("turns completed", self.turns_completed),
            ("turns failed (codes)", f"{sum(self.turns_failed.values())} ({failed or '-'})"),
            ("turns stuck (not finished)", self.turns_stuck),
            ("turns recovered after a lost worker", self.turns_recovered),
            ("lost messages", self.lost_messages),
            ("duplicated durable events", self.duplicated_events),
            ("seq / session_seq gaps", f"{self.seq_gaps} / {self.session_seq_gaps}"),
            ("per-agent order violations", self.order_violations),
            ("durable events stored", self.durable_events),
            ("SSE durable events received", self.stream_events),
            (
                "SSE duplicates / gaps / reconnects",
                f"{self.stream_duplicates} / {self.stream_gaps} / {self.stream_reconnects}",
            ),
            ("worker SIGKILLs / Redis restarts", f"{self.worker_kills} / {self.redis_restarts}"),
            ("Redis down until /readyz said 200 again", f"{self.readyz_down_s:.1f} s"),
            ("send phase", f"{self.send_phase_s:.1f} s"),
            ("time to drain (last send to last turn end)", drain),
            ("total", f"{self.total_s:.1f} s"),
            ("verdict", "PASS" if self.ok else "FAIL"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class ChaosRun:
    def __init__(self, plan: ChaosPlan, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.workdir = workdir
        self.log = log
        self.rng = random.Random(plan.seed)
        self.cluster = Cluster(
            workdir,
            ClusterOptions(
                db=plan.db,
                lease_s=plan.lease_s,
                sweep_interval_s=plan.sweep_interval_s,
                concurrency=plan.concurrency,
                llm_latency_s=plan.llm_latency_s,
                llm_token_delay_s=plan.llm_token_delay_s,
            ),
        )
        self.report = ChaosReport(plan=asdict(plan))
        self.sent: list[Sent] = []
        self.sending_done = asyncio.Event()
        self.agents: list[str] = []
        self._heads: dict[str, int] = {}

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.cluster.start, self.plan.workers)
            self.log(f"cluster up: {self.plan.workers} workers, db {self.plan.db}")
            await self._run_traffic()
        finally:
            self.report.worker_kills = self.cluster.kills
            self.report.redis_restarts = self.cluster.redis.restarts
            self.report.total_s = time.monotonic() - started
            await asyncio.to_thread(self.cluster.stop)
        return self.report

    async def _run_traffic(self) -> None:
        api = self.cluster.api
        assert api is not None
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            base_url=api.url, headers=api.headers, timeout=30, limits=limits
        ) as client:
            sessions = await self._setup(client)
            streams = [
                FollowedStream(client, f"/v1/sessions/{sid}/events/stream").start()
                for sid in sessions
            ]
            chaos = [
                asyncio.create_task(self._kill_workers(), name="killer"),
                asyncio.create_task(self._restart_redis(), name="redis"),
            ]
            try:
                await self._send_all(client)
                await self._drain()
                await self._settle_streams(streams)
            finally:
                for task in chaos:
                    task.cancel()
                for task in chaos:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for stream in streams:
                    await stream.stop()
            self._audit(streams)

    # -- set-up ---------------------------------------------------------------------

    async def _setup(self, client: httpx.AsyncClient) -> list[str]:
        """Sessions of ``agents_per_session`` agents; returns the session ids."""
        assert self.cluster.llm is not None
        instance = await create_instance(client, self.cluster.llm)  # type: ignore[arg-type]
        sessions: list[str] = []
        workspace = self.workdir / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "notes.txt").write_text("chaos\n")
        while len(self.agents) < self.plan.agents:
            session = await create_session(client, instance, working_directory=str(workspace))
            sessions.append(session["id"])
            self.agents.append(session["coordinator_agent_id"])
            for n in range(1, self.plan.agents_per_session):
                if len(self.agents) >= self.plan.agents:
                    break
                resp = await client.post(
                    f"/v1/sessions/{session['id']}/agents", json={"name": f"agent {n}"}
                )
                assert resp.status_code == 201, resp.text
                self.agents.append(resp.json()["id"])
        return sessions

    # -- traffic --------------------------------------------------------------------

    def _plan_messages(self) -> list[Sent]:
        messages = []
        for i in range(self.plan.messages):
            key = f"m{i:05d}"
            agent = self.rng.choice(self.agents)
            messages.append(Sent(key, agent, f"[{key}] {FILLER}"))
        return messages

    async def _send_all(self, client: httpx.AsyncClient) -> None:
        assert self.cluster.llm is not None
        messages = self._plan_messages()
        for message in messages:
            if self.rng.random() < self.plan.tool_share:
                reply = Reply(tool_calls=[("file_list", {"path": "."})])
                await asyncio.to_thread(self.cluster.llm.script, reply, f"[{message.key}]", 1)
        self.sent = messages
        slots = asyncio.Semaphore(MAX_SENDS_IN_FLIGHT)
        interval = 1.0 / self.plan.send_rate_per_s
        started = time.monotonic()
        tasks = []
        for i, message in enumerate(messages):
            await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
            await slots.acquire()
            task = asyncio.create_task(self._send(client, message))
            task.add_done_callback(lambda _: slots.release())
            tasks.append(task)
        await asyncio.gather(*tasks)
        self.report.send_phase_s = time.monotonic() - started
        self.sending_done.set()
        accepted = sum(1 for m in messages if m.turn_id)
        self.log(f"sent {len(messages)} messages, {accepted} accepted")

    async def _send(self, client: httpx.AsyncClient, message: Sent) -> None:
        """Send until a definite answer, as a careful client does (same key, same body)."""
        headers = {"Idempotency-Key": message.key}
        body = {"content": message.content}
        for attempt in range(SEND_TRIES):
            message.tries = attempt + 1
            try:
                resp = await client.post(
                    f"/v1/agents/{message.agent_id}/messages", json=body, headers=headers
                )
            except httpx.HTTPError:
                resp = None
            if resp is not None:
                message.status = resp.status_code
                if resp.status_code == 202:
                    message.turn_id = resp.json()["turn"]["id"]
                    return
                if resp.status_code < 500 and resp.status_code != 429:
                    return  # a definite refusal: counted as a send failure
            await asyncio.sleep(0.25 * 2**attempt)

    # -- faults ---------------------------------------------------------------------

    async def _kill_workers(self) -> None:
        if self.plan.kill_every_s <= 0:
            return
        while not self.sending_done.is_set() and self.cluster.kills < self.plan.max_kills:
            await asyncio.sleep(self.plan.kill_every_s)
            if self.sending_done.is_set():
                return
            victim = await asyncio.to_thread(self.cluster.kill_worker, None, self.rng)
            self.log(f"SIGKILL worker pid {victim.proc.pid} ({self.cluster.kills} so far)")
            await asyncio.to_thread(self.cluster.start_worker, wait=False)

    async def _restart_redis(self) -> None:
        restarts = self.plan.redis_restarts
        if restarts <= 0:
            return
        send_s = self.plan.messages / self.plan.send_rate_per_s
        for _ in range(restarts):  # spread over the send phase
            await asyncio.sleep(send_s / (restarts + 1))
            self.log("Redis: crash and restart (its queue is lost)")
            await asyncio.to_thread(self.cluster.redis.restart, self.plan.redis_down_s)
            await self._time_readyz()

    async def _time_readyz(self) -> None:
        """How long /readyz still says 503 once Redis is back (the API's reconnection)."""
        api = self.cluster.api
        assert api is not None
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        self.report.readyz_down_s += time.monotonic() - started + self.plan.redis_down_s

    # -- the end ----------------------------------------------------------------------

    async def _drain(self) -> None:
        turn_ids = [m.turn_id for m in self.sent if m.turn_id is not None]
        started = last_log = time.monotonic()
        while True:
            remaining = await asyncio.to_thread(open_turns, self.cluster.db, turn_ids)
            if remaining == 0:
                self.report.time_to_drain_s = time.monotonic() - started
                self.log(f"drained in {self.report.time_to_drain_s:.1f} s")
                return
            if time.monotonic() - started > self.plan.drain_timeout_s:
                self.log(f"not drained after {self.plan.drain_timeout_s:g} s: {remaining} open")
                return
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                self.log(f"draining: {remaining} turns open")
            await asyncio.sleep(0.5)

    async def _settle_streams(self, streams: list[FollowedStream]) -> None:
        final = await asyncio.to_thread(heads, self.cluster.db)
        for stream in streams:
            session_id = stream.url.split("/")[3]
            await stream.wait_for(final.get(session_id, 0), timeout_s=30)
        self._heads = final

    def _audit(self, streams: list[FollowedStream]) -> None:
        result = audit(self.cluster.db, self.sent)
        self._fill(result)
        r = self.report
        for stream in streams:
            session_id = stream.url.split("/")[3]
            duplicates, gaps = stream.check(self._heads.get(session_id, 0))
            r.stream_events += len(stream.cursors)
            r.stream_duplicates += duplicates
            r.stream_gaps += gaps
            r.stream_reconnects += stream.reconnects

    def _fill(self, result: Audit) -> None:
        r = self.report
        r.messages_sent = len(self.sent)
        r.messages_accepted = sum(1 for m in self.sent if m.turn_id)
        r.send_failures = r.messages_sent - r.messages_accepted
        r.send_retries = sum(m.tries - 1 for m in self.sent)
        r.turns_completed = result.completed
        r.turns_failed = dict(result.failed)
        r.turns_cancelled = result.cancelled
        r.turns_stuck = len(result.stuck)
        r.turns_recovered = result.recovered_turns
        r.lost_messages = len(result.lost)
        r.duplicated_events = result.duplicated_events
        r.seq_gaps = result.seq_gaps
        r.session_seq_gaps = result.session_seq_gaps
        r.order_violations = result.order_violations
        r.closing_mismatches = result.closing_mismatches
        r.durable_events = result.events
        r.details = (result.duplicates + [f"lost {k}" for k in result.lost])[:50]
        r.details += [f"stuck {t}" for t in result.stuck[:20]]


def run_chaos(plan: ChaosPlan, workdir: Path, log: Callable[[str], None] = print) -> ChaosReport:
    return asyncio.run(ChaosRun(plan, workdir, log).run())
