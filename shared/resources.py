"""Per-process resources, made once on the process's event loop and passed explicitly.

Nothing here is a module global: tests build their own Resources on their
own loop, and ``aclose()`` releases everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import redis.asyncio as aioredis

from shared.agents.calls import FlowControl
from shared.bus import RedisSink
from shared.crypto import Cipher, check_fingerprint, load_fernet_key
from shared.db import Database, sqlite_file
from shared.http import HttpPools
from shared.migrate import migrate
from shared.outbound import AddressPolicy
from shared.providers.registry import ProviderHook, ProviderRegistry
from shared.settings import Settings
from shared.sink import EventSink
from shared.throttle import Throttle
from shared.tools.sandbox import ToolIsolation, detect


@dataclass
class Resources:
    settings: Settings
    db: Database
    http: HttpPools
    registry: ProviderRegistry
    cipher: Cipher
    redis: aioredis.Redis
    sink: EventSink

    @cached_property
    def flow(self) -> FlowControl:
        """Provider limits and budgets, shared by the turns of this process."""
        return FlowControl(Throttle(self.redis), self.db, self.settings.turn_timeout_s)

    @cached_property
    def outbound(self) -> AddressPolicy:
        """Where requests a model chooses may go (``BOBBIN_URL_FETCH_ALLOW``)."""
        return AddressPolicy.parse(self.settings.url_fetch_allow)

    @cached_property
    def isolation(self) -> ToolIsolation:
        """The sandbox for tool processes, found at first use (a worker's start)."""
        s = self.settings
        return detect(
            network=s.tool_network, pids_max=s.tool_pids_max, unsandboxed=s.tool_unsandboxed
        )

    async def aclose(self) -> None:
        await self.sink.aclose()
        await self.http.aclose()
        await self.redis.aclose()
        self.db.dispose()


def open_database(settings: Settings, *, loopback: bool = True) -> tuple[Database, Cipher]:
    """Reach the database, check the secret key, migrate, check the key's fingerprint;
    return database and cipher.

    The database first: a wrong URL is the likelier mistake, and whether a key is
    needed at all depends on which database it is. The engine is disposed when a
    step fails.
    """
    _make_data_dir(settings)
    db = Database(settings.effective_database_url)
    try:
        db.ping()
        key = load_fernet_key(settings, loopback=loopback)
        migrate(db)
        db.run_sync(check_fingerprint, key)
    except BaseException:
        db.dispose()
        raise
    return db, Cipher(key)


def _make_data_dir(settings: Settings) -> None:
    """The data directory is Bobbin's own: made when the SQLite file lives in it.
    Any other directory a URL names is never made (a typo would create it)."""
    path = sqlite_file(settings.effective_database_url)
    if path is not None and Path(path).parent.resolve() == settings.data_dir.resolve():
        settings.data_dir.mkdir(parents=True, exist_ok=True)


async def open_resources(
    settings: Settings,
    *,
    sink: EventSink | None = None,
    loopback: bool = True,
    concurrency: int | None = None,
    provider_hook: ProviderHook | None = None,
) -> Resources:
    """Build the process's resources on the running loop (migrating the database first).

    ``provider_hook`` sees every provider the registry makes (a worker's metrics).
    """
    db, cipher = open_database(settings, loopback=loopback)
    http = HttpPools(concurrency or settings.worker_concurrency)
    # A blocking pool: with hundreds of turns publishing at once, redis-py's default
    # pool raises "Too many connections" instead of waiting, and events are lost.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=(concurrency or settings.worker_concurrency) + 50,
        timeout=10,
    )
    redis = aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it
    return Resources(
        settings=settings,
        db=db,
        http=http,
        registry=ProviderRegistry(db, cipher, http, provider_hook),
        cipher=cipher,
        redis=redis,
        sink=sink or RedisSink(redis),
    )
