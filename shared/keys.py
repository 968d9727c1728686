"""Every Redis key and channel Bobbin uses, under the ``bobbin:`` prefix."""

PREFIX = "bobbin"


def session_channel(session_id: str) -> str:
    """Pub/sub channel carrying every event of one session's agents."""
    return f"{PREFIX}:events:{session_id}"


def cancel_channel() -> str:
    """Pub/sub channel on which the API announces turn cancellations to workers."""
    return f"{PREFIX}:cancel"


def celery_queue() -> str:
    return f"{PREFIX}.turns"
