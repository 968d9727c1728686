"""What every tool is: a name, a description, an input model and an async ``run``.

A tool's ``Input`` model is its contract with the model: its JSON schema is
what the provider sends, and the executor validates the model's arguments
against it before ``run`` sees them. A tool reports a failure the model should
read by raising ``ToolFailure``; the executor turns it (and any other error)
into a ``failed`` result, so a turn never dies of a tool's mistake.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from shared.llm import ToolSpec
from shared.outbound import AddressPolicy
from shared.tools.sandbox import NOT_ISOLATED, ToolIsolation


class ToolFailure(Exception):
    """A clear failure of a tool call: its message is what the model reads."""


@dataclass(frozen=True)
class ToolContext:
    """Where and with what a tool call runs; one per turn.

    ``outbound`` says which internal addresses ``url_fetch`` may reach (none by
    default); ``isolation`` is the worker's sandbox for tool processes (none by
    default: then ``bash`` refuses to run). ``bash_timeout_s`` is both the
    default and the ceiling of a bash command's timeout; ``output_cap_bytes``
    bounds the text a tool returns to the model.
    """

    working_directory: Path
    outbound: AddressPolicy = AddressPolicy()
    isolation: ToolIsolation = NOT_ISOLATED
    bash_timeout_s: float = 120
    output_cap_bytes: int = 64_000


class ToolResult(BaseModel):
    status: Literal["completed", "failed"]
    content: str


class ToolInput(BaseModel):
    """Base of tool inputs: unknown arguments are refused, so a misspelt one is reported."""

    model_config = ConfigDict(extra="forbid")


class Tool(ABC):
    """A tool the model can call.

    ``reading`` tools only look (default policy ``allow``); the others change
    something or reach outside (default policy ``ask``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Input: ClassVar[type[BaseModel]]
    reading: ClassVar[bool] = False

    def spec(self) -> ToolSpec:
        return _spec_of(type(self))

    @abstractmethod
    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        """Run with validated ``args`` (an ``Input``); raises ``ToolFailure`` or ``OSError``."""


@cache
def _spec_of(tool: type[Tool]) -> ToolSpec:
    """Generating a JSON schema costs about a millisecond: do it once per tool class."""
    return ToolSpec(
        name=tool.name, description=tool.description, input_schema=tool.Input.model_json_schema()
    )


def completed(content: str) -> ToolResult:
    return ToolResult(status="completed", content=content)


def failed(content: str) -> ToolResult:
    return ToolResult(status="failed", content=content)


def cap_text(text: str, cap_bytes: int) -> str:
    """``text`` cut to at most ``cap_bytes`` of UTF-8 (on a character boundary), with a note."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= cap_bytes:
        return text
    kept = data[:cap_bytes].decode("utf-8", errors="ignore")
    return f"{kept}\n[output truncated: {cap_bytes} of {len(data)} bytes shown]"
