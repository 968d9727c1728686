"""Every Redis key and channel Bobbin uses, under the ``bobbin:`` prefix."""

PREFIX = "bobbin"


def session_channel(session_id: str) -> str:
    """Pub/sub channel carrying every event of one session's agents."""
    return f"{PREFIX}:events:{session_id}"


def cancel_channel() -> str:
    """Pub/sub channel on which the API announces turn cancellations to workers."""
    return f"{PREFIX}:cancel"


def celery_queue() -> str:
    """The Celery queue the kicks travel on."""
    return f"{PREFIX}.turns"


def kick_pending(agent_id: str) -> str:
    """Set while a kick for the agent is on its way to a worker (``shared.queue.KickSender``)."""
    return f"{PREFIX}:kick-pending:{agent_id}"


def worker_loads() -> str:
    """Hash of worker id -> "agents carried, capacity, posted at" (``workers.balance``)."""
    return f"{PREFIX}:worker-loads"
