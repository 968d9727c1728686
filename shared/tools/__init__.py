"""The agents' tools: the tool base, the built-ins and the executor (API.md, "Tools")."""

from shared.tools.base import Tool, ToolContext, ToolFailure, ToolInput, ToolResult
from shared.tools.bash import Bash
from shared.tools.executor import Policy, ToolExecutor
from shared.tools.files import FileEdit, FileList, FileRead, FileWrite
from shared.tools.search import FileFind, FileSearch
from shared.tools.web import UrlFetch


def builtin_tools() -> list[Tool]:
    """Fresh instances of every built-in tool."""
    return [
        FileRead(),
        FileList(),
        FileFind(),
        FileSearch(),
        FileWrite(),
        FileEdit(),
        Bash(),
        UrlFetch(),
    ]


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
