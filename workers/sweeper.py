"""The sweeper: the database, not the broker, recovers lost work.

Every ``sweep_interval_s`` each worker kicks agents that have an open head
turn and no live lease: running turns whose worker died (the kicked worker
counts the lost attempt and resumes or fails the turn), queued turns whose
kick was lost, for instance with Redis, and parked turns that came due (a
provider's cooldown, a limit, a budget). It also releases the budget
reservations of calls whose workers died before settling them. Its kicks are re-kicks
(``KickSender.rekick``): they are sent even when the agent's kick-pending marker
says a kick is on its way, since that kick may be the one that was lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from shared.budgets import expired_holds, release_holds
from shared.queue import KickSender
from shared.resources import Resources
from shared.turns import agents_needing_kick, expired_running_turns

log = logging.getLogger(__name__)


async def sweep_once(resources: Resources, kicks: KickSender) -> list[str]:
    """Kick every agent with stranded work; returns the agents kicked."""
    now = time.time()
    if expired := await resources.db.read(expired_holds, now):
        released = await resources.db.run(release_holds, expired)
        log.warning("released %d budget reservations their workers never settled", released)
    lost = await resources.db.read(expired_running_turns, now)
    waiting = await resources.db.read(agents_needing_kick, now)
    agents = sorted({turn.agent_id for turn in lost} | set(waiting))
    for agent_id in agents:
        await kicks.rekick(agent_id)
    if agents:
        log.info("sweeper kicked %d agents", len(agents))
    return agents


async def sweep_forever(resources: Resources, kicks: KickSender) -> None:
    interval = resources.settings.sweep_interval_s
    await asyncio.sleep(random.uniform(0.5, 1.0) * interval)  # workers spread their sweeps
    while True:
        try:
            await sweep_once(resources, kicks)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep failed; trying again next interval")
        await asyncio.sleep(interval)
