"""``Authorization: Bearer <key>`` on every ``/v1`` route; keys are looked up by hash.

No cache: a revoked key fails on the next request. ``create_app(auth=False)``
runs open (the CLI allows that on loopback only).

``require_api_key`` (on the ``/v1`` router) reads the key in its own transaction,
before the route runs. A route on the hot path can save that transaction and its
executor hop by taking ``PendingKeyDep``: the dependency then only checks that a key
was sent, and the route verifies it inside its own transaction, first
(``key.verify(session)``), so a bad key answers the same 401 and changes nothing.
The price: there a bad key is refused inside a write transaction (on SQLite one
that took the write lock) instead of a read; it is rolled back and stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.deps import StateDep
from api.state import ApiState
from shared.apikeys import ensure_key, verify_key
from shared.db import Database
from shared.errors import BobbinError, Unauthorized
from shared.settings import Settings

MAX_KEY_CHARS = 1000
BOOTSTRAP_KEY_NAME = "bootstrap"
NO_KEY = "send an API key as 'Authorization: Bearer <key>'"
BAD_KEY = "the API key is not valid or was revoked"

_bearer = HTTPBearer(auto_error=False, description="An API key made with `bobbin keys create`.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _presented_key(state: ApiState, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The key the request carries, not yet looked up; None when the API runs open.

    Raises Unauthorized for what needs no lookup: no key, or one too long to be ours.
    """
    if not state.auth:
        return None
    if credentials is None or not credentials.credentials:
        raise Unauthorized(NO_KEY)
    key = credentials.credentials
    if len(key) > MAX_KEY_CHARS:
        raise Unauthorized(BAD_KEY)
    return key


async def require_api_key(request: Request, state: StateDep, credentials: BearerDep) -> None:
    """Raises Unauthorized unless the request carries an active API key.

    On a route that takes ``PendingKeyDep`` the lookup is left to the route's transaction.
    """
    key = _presented_key(state, credentials)
    if key is None or _verifies_key_itself(request):
        return
    if await state.resources.db.read(verify_key, key) is None:
        raise Unauthorized(BAD_KEY)


@dataclass
class PendingKey:
    """The request's API key, still to be verified by the route, inside its transaction."""

    plaintext: str | None  # None: the API runs open
    verified: bool = False

    def verify(self, session: Session) -> None:
        """Raises Unauthorized unless the key is active: call it first in the transaction."""
        if self.plaintext is not None and verify_key(session, self.plaintext) is None:
            raise Unauthorized(BAD_KEY)
        self.verified = True


async def _pending_key(state: StateDep, credentials: BearerDep) -> AsyncIterator[PendingKey]:
    key = PendingKey(_presented_key(state, credentials))
    try:
        yield key
    except RequestValidationError:
        # The request is invalid (its body, a header), so the route never ran and never
        # verified the key: a bad key still answers 401, as when require_api_key read it
        # before validation; a good one gets the 422.
        unverified = None if key.verified else key.plaintext
        if unverified is not None and await state.resources.db.read(verify_key, unverified) is None:
            raise Unauthorized(BAD_KEY) from None
        raise


PendingKeyDep = Annotated[PendingKey, Depends(_pending_key)]


def _verifies_key_itself(request: Request) -> bool:
    """Whether the matched route takes ``PendingKeyDep`` (and so verifies the key)."""
    route = request.scope.get("route")
    return isinstance(route, APIRoute) and any(
        dependency.call is _pending_key for dependency in route.dependant.dependencies
    )


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
