"""Where events go once committed: an interface, Redis in production, memory in tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from shared.events import Envelope


class EventSink(Protocol):
    async def publish(self, events: Sequence[Envelope]) -> None:
        """Deliver events to live subscribers; best effort (durable ones are in the DB)."""
        ...

    def publish_nowait(
        self,
        events: Sequence[Envelope],
        on_sent: Callable[[], None] | None = None,
        still_current: Callable[[], bool] | None = None,
    ) -> None:
        """Hand events over for delivery after those handed over before; best effort.
        ``on_sent`` is called once they were delivered (never if they were not);
        ``still_current`` is asked when they go out, and False drops them."""
        ...

    async def aclose(self) -> None:
        """Deliver what was handed over."""
        ...


class MemorySink:
    """Keeps every published event, in order. For tests and local tools."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []

    async def publish(self, events: Sequence[Envelope]) -> None:
        self.events.extend(events)

    def publish_nowait(
        self,
        events: Sequence[Envelope],
        on_sent: Callable[[], None] | None = None,
        still_current: Callable[[], bool] | None = None,
    ) -> None:
        if still_current is None or still_current():
            self.events.extend(events)
        if on_sent is not None:
            on_sent()

    async def aclose(self) -> None:
        return None

    def of_type(self, type_: str) -> list[Envelope]:
        return [e for e in self.events if e.type == type_]
