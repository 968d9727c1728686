"""The tool executor: the agent's one door to its tools.

It answers which tools exist (``specs``), what each may do without asking
(``policy``), and runs a call. ``execute`` never raises for a tool's problem:
an unknown tool, bad arguments, a ``ToolFailure``, an ``OSError`` or any other
exception become a ``failed`` result the model can read and act on. Only
``asyncio.CancelledError`` (and other ``BaseException``) pass through, so a
cancelled turn stops at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from pydantic import ValidationError

from shared.llm import ToolSpec
from shared.tools.base import Tool, ToolContext, ToolFailure, ToolResult, failed

logger = logging.getLogger(__name__)

Policy = Literal["allow", "ask", "deny"]
POLICIES: frozenset[str] = frozenset(get_args(Policy))


class ToolExecutor:
    """Runs the calls of one agent's tools under its policies.

    ``policies`` maps a tool name to ``allow``, ``ask`` or ``deny``; a tool
    without one gets its default: ``allow`` when it is a reading tool, ``ask``
    otherwise. Raises ``ValueError`` for two tools of one name or an unknown policy.
    """

    def __init__(self, tools: Sequence[Tool], policies: Mapping[str, Policy] | None = None):
        self.tools: list[Tool] = list(tools)
        self._by_name: dict[str, Tool] = {}
        for tool in self.tools:
            if tool.name in self._by_name:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._by_name[tool.name] = tool
        self._policies: dict[str, Policy] = dict(policies or {})
        for name, policy in self._policies.items():
            if policy not in POLICIES:
                raise ValueError(f"policy {policy!r} of tool {name!r} is not one of {POLICIES}")

    def specs(self) -> list[ToolSpec]:
        return [tool.spec() for tool in self.tools]

    def policy(self, name: str) -> Policy:
        """The explicit policy, else the tool's default; ``allow`` for an unknown
        tool, so that ``execute`` runs and reports it to the model."""
        if name in self._policies:
            return self._policies[name]
        tool = self._by_name.get(name)
        if tool is None or tool.reading:
            return "allow"
        return "ask"

    def is_reading(self, name: str) -> bool:
        tool = self._by_name.get(name)
        return tool is not None and tool.reading

    async def execute(self, name: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run one call; every tool problem comes back as a ``failed`` result."""
        tool = self._by_name.get(name)
        if tool is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            return failed(f"unknown tool {name!r}; the tools are: {known}")
        try:
            args = tool.Input.model_validate(arguments)
        except ValidationError as exc:
            return failed(f"invalid arguments for {name}: {describe_validation_error(exc)}")
        try:
            return await tool.run(args, ctx)
        except ToolFailure as exc:
            return failed(str(exc))
        except OSError as exc:
            return failed(f"{name} failed: {describe_os_error(exc, ctx)}")
        except Exception as exc:
            logger.exception("tool %s raised unexpectedly", name)
            return failed(f"{name} failed unexpectedly: {type(exc).__name__}: {exc}")


def describe_validation_error(exc: ValidationError) -> str:
    """One ``field: problem`` per error, e.g. ``path: Field required``."""
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{field}: {error['msg']}")
    return "; ".join(problems)


def describe_os_error(exc: OSError, ctx: ToolContext) -> str:
    """The error's reason and file, the file shown relative to the working directory."""
    reason = exc.strerror or str(exc)
    if not isinstance(exc.filename, str):
        return reason
    root = os.path.realpath(ctx.working_directory)
    filename = exc.filename
    if filename == root or filename.startswith(root + os.sep):
        filename = os.path.relpath(filename, root)
    return f"{reason}: {filename}"
