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


def cooldown(instance_id: str, model_id: str) -> str:
    """Set while a provider asked every caller of this instance and model to wait
    (``shared.throttle``); its value is the epoch second it ends, and it expires then."""
    return f"{PREFIX}:cooldown:{instance_id}:{model_id}"


def rate_bucket(instance_id: str, scope: str, kind: str) -> str:
    """A token bucket of an instance's limit (``scope``: ``*`` for the whole instance, or a
    model id; ``kind``: requests, input_tokens or output_tokens per minute)."""
    return f"{PREFIX}:bucket:{instance_id}:{scope}:{kind}"


def in_flight(instance_id: str, scope: str) -> str:
    """Sorted set of the calls in flight on an instance (or one of its models), each
    scored with when its claim lapses, for ``max_concurrent_requests``."""
    return f"{PREFIX}:inflight:{instance_id}:{scope}"
