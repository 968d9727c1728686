"""The executor: specs, policies, and every tool problem as a failed result."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import ClassVar

import pytest

from shared.tools import (
    Tool,
    ToolContext,
    ToolExecutor,
    ToolFailure,
    ToolInput,
    ToolResult,
    builtin_tools,
)

READING = {"file_read", "file_list", "file_find", "file_search"}
WRITING = {"file_write", "file_edit", "bash", "url_fetch"}


class _Input(ToolInput):
    what: str = "boom"


class _Raising(Tool):
    """Raises what its argument names: the executor's inputs for each error kind."""

    name = "raising"
    description = "Raises."
    Input = _Input
    raised: ClassVar[dict[str, BaseException]] = {}

    async def run(self, args: _Input, ctx: ToolContext) -> ToolResult:
        if args.what == "failure":
            raise ToolFailure("a clear failure")
        if args.what == "oserror":
            path = os.path.join(os.path.realpath(ctx.working_directory), "locked.txt")
            raise PermissionError(errno.EACCES, "Permission denied", path)
        if args.what == "cancelled":
            raise asyncio.CancelledError
        if args.what == "hang":
            await asyncio.Event().wait()
        raise RuntimeError("boom")


def test_builtin_tools_are_fresh_instances_with_unique_names() -> None:
    first, second = builtin_tools(), builtin_tools()

    assert {tool.name for tool in first} == READING | WRITING
    assert all(a is not b for a, b in zip(first, second, strict=True))


def test_specs_carry_each_tools_input_schema() -> None:
    specs = {spec.name: spec for spec in ToolExecutor(builtin_tools()).specs()}

    assert set(specs) == READING | WRITING
    assert specs["file_edit"].input_schema["required"] == ["path", "old", "new"]
    assert specs["file_read"].input_schema["additionalProperties"] is False
    assert all(spec.description for spec in specs.values())


def test_reading_tools_default_to_allow_and_the_others_to_ask() -> None:
    executor = ToolExecutor(builtin_tools())

    assert {name: executor.policy(name) for name in READING} == dict.fromkeys(READING, "allow")
    assert {name: executor.policy(name) for name in WRITING} == dict.fromkeys(WRITING, "ask")
    assert all(executor.is_reading(name) for name in READING)
    assert not any(executor.is_reading(name) for name in WRITING)


def test_an_explicit_policy_wins_over_the_default() -> None:
    executor = ToolExecutor(builtin_tools(), {"file_read": "deny", "bash": "allow"})

    assert executor.policy("file_read") == "deny"
    assert executor.policy("bash") == "allow"
    assert executor.policy("file_write") == "ask"


def test_an_unknown_tool_is_allowed_so_that_execute_reports_it() -> None:
    executor = ToolExecutor(builtin_tools())

    assert executor.policy("no_such_tool") == "allow"
    assert not executor.is_reading("no_such_tool")


def test_two_tools_of_one_name_or_an_unknown_policy_are_refused() -> None:
    with pytest.raises(ValueError, match="two tools"):
        ToolExecutor([_Raising(), _Raising()])
    with pytest.raises(ValueError, match="policy"):
        ToolExecutor([_Raising()], {"raising": "maybe"})  # type: ignore[dict-item]


async def test_executing_an_unknown_tool_fails_naming_the_known_ones(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    result = await executor.execute("no_such_tool", {}, ctx)

    assert result.status == "failed"
    assert "unknown tool 'no_such_tool'" in result.content
    assert "file_read" in result.content


async def test_invalid_arguments_fail_naming_each_wrong_field(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    missing = await executor.execute("file_read", {}, ctx)
    wrong_type = await executor.execute("file_read", {"path": "a", "limit": "many"}, ctx)
    misspelt = await executor.execute("file_list", {"pth": "."}, ctx)

    assert missing.status == "failed"
    assert missing.content == "invalid arguments for file_read: path: Field required"
    assert "limit: Input should be a valid integer" in wrong_type.content
    assert "pth: Extra inputs are not permitted" in misspelt.content


@pytest.mark.parametrize(
    ("what", "content"),
    [
        ("failure", "a clear failure"),
        ("oserror", "raising failed: Permission denied: locked.txt"),
        ("other", "raising failed unexpectedly: RuntimeError: boom"),
    ],
)
async def test_tool_errors_become_failed_results(
    ctx: ToolContext, what: str, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    executor = ToolExecutor([_Raising()])

    result = await executor.execute("raising", {"what": what}, ctx)

    assert (result.status, result.content) == ("failed", content)


async def test_cancellation_raised_by_a_tool_propagates(ctx: ToolContext) -> None:
    executor = ToolExecutor([_Raising()])

    with pytest.raises(asyncio.CancelledError):
        await executor.execute("raising", {"what": "cancelled"}, ctx)


async def test_cancelling_a_running_call_propagates(ctx: ToolContext) -> None:
    executor = ToolExecutor([_Raising()])
    task = asyncio.create_task(executor.execute("raising", {"what": "hang"}, ctx))
    await asyncio.sleep(0.01)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_missing_working_directory_fails_the_call(
    executor: ToolExecutor, tmp_path: Path
) -> None:
    gone = ToolContext(working_directory=tmp_path / "gone")

    result = await executor.execute("file_list", {}, gone)

    assert result.status == "failed"
    assert "working directory is unavailable" in result.content
