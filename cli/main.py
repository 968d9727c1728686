"""The ``bobbin`` console script: wiring only; each command lives in its own module.

A command's module is imported only when that command runs (``--help`` lists
them from here), so ``bobbin chat`` and ``bobbin --help`` start without the
database, the provider SDKs or the server. Every command that uses the
database migrates it first, and a command that cannot run exits non-zero with
a one-line reason (cli/common.py).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import typer

# name: (module, attribute, the one line --help shows)
COMMANDS = {
    "serve": ("cli.serve", "serve", "Run the HTTP API."),
    "worker": ("cli.serve", "worker", "Run one worker process."),
    "dev": ("cli.dev", "dev", "API and one worker on 127.0.0.1, with a conversation shown."),
    "chat": ("cli.chat", "chat", 'Talk to an agent: bobbin chat AGENT_ID|new "message".'),
    "keys": ("cli.keys", "app", "Create, list and revoke API keys."),
    "providers": ("cli.providers", "app", "Add, list and test LLM provider instances."),
}


class LazyCommands(typer.core.TyperGroup):
    """Imports a command's module when the command is asked for, not before. (``Any``:
    the context and formatter are the click vendored in typer, which it does not export.)"""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:  # a Command, or None
        if cmd_name not in COMMANDS:
            return None
        module, attribute, help_line = COMMANDS[cmd_name]
        target: Any = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            group = typer.main.get_command(target)
            group.name = cmd_name
            return group
        single = typer.Typer(add_completion=False)
        single.command(name=cmd_name, help=help_line)(target)
        return typer.main.get_command(single)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # typer suggests a name from the commands it has built, and none is built yet
        if args and args[0] not in COMMANDS and not args[0].startswith("-"):
            matches = difflib.get_close_matches(args[0], COMMANDS)
            hint = f" Did you mean {', '.join(map(repr, matches))}?" if matches else ""
            ctx.fail(f"No such command {args[0]!r}.{hint}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, line) for name, (_, _, line) in COMMANDS.items()])


app = typer.Typer(
    cls=LazyCommands,
    name="bobbin",
    help="Bobbin: AI agents as queued background jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich's would import every command to list them
)


@app.callback()
def bobbin() -> None:
    """Bobbin: AI agents as queued background jobs."""


if __name__ == "__main__":
    app()
