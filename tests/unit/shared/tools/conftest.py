from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shared.tools import ToolContext, ToolExecutor, ToolResult, builtin_tools
from shared.tools.sandbox import ToolIsolation, detect

Call = Callable[..., Awaitable[ToolResult]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The working directory; ``tmp_path / "outside"`` is its neighbour."""
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("outside secret\n")
    return directory


@pytest.fixture(scope="session")
def isolation() -> ToolIsolation:
    """The sandbox for tool processes, as a worker on this machine makes it (it must)."""
    found = detect(network=False, pids_max=64, unsandboxed=False)
    assert found.sandbox is not None, f"no sandbox for tool processes here: {found.reason}"
    return found


@pytest.fixture
def ctx(root: Path, isolation: ToolIsolation) -> ToolContext:
    return ToolContext(working_directory=root, isolation=isolation)


@pytest.fixture
def executor() -> ToolExecutor:
    return ToolExecutor(builtin_tools())


@pytest.fixture
def call(executor: ToolExecutor, ctx: ToolContext) -> Call:
    """``await call("file_read", path="a.txt")``: one call through the executor."""

    async def _call(name: str, **arguments: object) -> ToolResult:
        return await executor.execute(name, arguments, ctx)

    return _call
