"""``Authorization: Bearer <key>`` on every ``/v1`` route; keys are looked up by hash.

No cache: a revoked key fails on the next request. ``create_app(auth=False)``
runs open (the CLI allows that on loopback only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import StateDep
from api.state import ApiState
from shared.apikeys import ensure_key, verify_key
from shared.config import Settings
from shared.db import Database
from shared.errors import BobbinError, Unauthorized

MAX_KEY_CHARS = 1000
BOOTSTRAP_KEY_NAME = "bootstrap"

_bearer = HTTPBearer(auto_error=False, description="An API key made with `bobbin keys create`.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_api_key(state: StateDep, credentials: BearerDep) -> None:
    """Raises Unauthorized unless the request carries an active API key."""
    if not state.auth:
        return
    if credentials is None or not credentials.credentials:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    key = credentials.credentials
    if len(key) > MAX_KEY_CHARS or await state.resources.db.read(verify_key, key) is None:
        raise Unauthorized("the API key is not valid or was revoked")


def key_still_active(
    state: ApiState, credentials: HTTPAuthorizationCredentials | None
) -> Callable[[], Awaitable[bool]] | None:
    """For an answer that outlives its request (a stream): asks whether its key is still
    active, so revoking a key also ends its open streams. None when the API runs open."""
    if not state.auth or credentials is None:
        return None
    key = credentials.credentials

    async def still_active() -> bool:
        try:
            return await state.resources.db.read(verify_key, key) is not None
        except BobbinError:  # cannot tell: end it; the client resumes from its cursor
            return False

    return still_active


async def store_bootstrap_key(db: Database, settings: Settings) -> None:
    """Store ``BOBBIN_BOOTSTRAP_API_KEY`` hashed, unless a key with its hash exists."""
    if settings.bootstrap_api_key is not None:
        plaintext = settings.bootstrap_api_key.get_secret_value()
        if plaintext:
            await db.run(ensure_key, BOOTSTRAP_KEY_NAME, plaintext)
