"""The agents' tools: the tool base, the built-ins and the executor (API.md, "Tools")."""

from shared.tools.base import Tool, ToolContext, ToolFailure, ToolInput, ToolResult
from shared.tools.bash import Bash
from shared.tools.executor import Policy, ToolExecutor
from shared.tools.files import FileEdit, FileList, FileRead, FileWrite
from shared.tools.search import FileFind, FileSearch
from shared.tools.web import UrlFetch


def builtin_tools(*, bash: bool = True) -> list[Tool]:
    """Fresh instances of the built-in tools; ``bash`` only where it can run (a worker
    without a sandbox for tool processes does not offer it)."""
    tools: list[Tool] = [FileRead(), FileList(), FileFind(), FileSearch(), FileWrite(), FileEdit()]
    if bash:
        tools.append(Bash())
    tools.append(UrlFetch())
    return tools


__all__ = [
    "Bash",
    "FileEdit",
    "FileFind",
    "FileList",
    "FileRead",
    "FileSearch",
    "FileWrite",
    "Policy",
    "Tool",
    "ToolContext",
    "ToolExecutor",
    "ToolFailure",
    "ToolInput",
    "ToolResult",
    "UrlFetch",
    "builtin_tools",
]
