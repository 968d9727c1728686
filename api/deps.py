"""What routes receive, as ``Annotated`` aliases: each route reads as one line of intent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request

from api.schemas import MAX_INT_CURSOR, MAX_LIST_LIMIT, MAX_NAME_CHARS
from api.state import ApiState, Kicker
from shared.agents.records import AgentRecords
from shared.db import Database
from shared.errors import InvalidCursor
from shared.providers.registry import ProviderRegistry
from shared.resources import Resources

T = TypeVar("T")


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.bobbin
    return state


StateDep = Annotated[ApiState, Depends(_state)]


def _resources(state: StateDep) -> Resources:
    return state.resources


def _db(state: StateDep) -> Database:
    return state.resources.db


def _registry(state: StateDep) -> ProviderRegistry:
    return state.resources.registry


def _agents(state: StateDep) -> AgentRecords:
    return AgentRecords(state.resources.db, state.resources.registry)


def _kicker(state: StateDep) -> Kicker:
    return state.kicker


ResourcesDep = Annotated[Resources, Depends(_resources)]
DbDep = Annotated[Database, Depends(_db)]
RegistryDep = Annotated[ProviderRegistry, Depends(_registry)]
KickerDep = Annotated[Kicker, Depends(_kicker)]
AgentsDep = Annotated[AgentRecords, Depends(_agents)]


def parse_int_cursor(value: str) -> int:
    """A non-negative integer cursor; raises InvalidCursor."""
    if not value.isascii() or not value.isdigit() or int(value) > MAX_INT_CURSOR:
        raise InvalidCursor(f"cursor {value!r} is not valid: use a next_cursor this API returned")
    return int(value)


@dataclass(frozen=True)
class Page:
    """``limit`` and ``cursor`` of a list route; reading ``fetch`` rows tells if more follow."""

    limit: int
    cursor: str | None

    @property
    def fetch(self) -> int:
        return self.limit + 1

    def int_cursor(self) -> int | None:
        return None if self.cursor is None else parse_int_cursor(self.cursor)

    def cut(self, rows: list[T], key: Any) -> tuple[list[T], str | None]:
        """The page and its ``next_cursor`` (``key`` of the last row, None at the end)."""
        if len(rows) <= self.limit:
            return rows, None
        rows = rows[: self.limit]
        return rows, str(key(rows[-1]))


def _page(
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_CHARS)] = None,
) -> Page:
    return Page(limit, cursor)


PageDep = Annotated[Page, Depends(_page)]
