"""The ``bobbin`` console script: wiring only; each command lives in its own module.

Every command that uses the database migrates it first, and a command that
cannot run exits non-zero with a one-line reason (cli/common.py).
"""

from __future__ import annotations

import typer

from cli import keys, providers
from cli.chat import chat
from cli.dev import dev
from cli.serve import serve, worker

app = typer.Typer(
    name="bobbin",
    help="Bobbin: AI agents as queued background jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(help="Run the HTTP API.")(serve)
app.command(help="Run one worker process.")(worker)
app.command(help="API and one worker on 127.0.0.1, with a conversation shown.")(dev)
app.command(help='Talk to an agent: bobbin chat AGENT_ID|new "message".')(chat)
app.add_typer(keys.app, name="keys")
app.add_typer(providers.app, name="providers")


if __name__ == "__main__":
    app()
