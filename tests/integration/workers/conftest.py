"""The kick sender the worker tests publish with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.queue import KickSender, make_celery
from shared.settings import Settings


@pytest.fixture
def kicks(settings: Settings) -> Iterator[KickSender]:
    with KickSender(make_celery(settings)) as sender:
        yield sender
