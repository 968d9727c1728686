"""``bobbin keys``: create, list and revoke API keys (stored hashed; shown once)."""

from __future__ import annotations

from datetime import datetime

import typer

from cli.common import database, load_settings, one_line_errors, print_table
from shared.apikeys import create_key, list_keys, revoke_key

app = typer.Typer(
    help="Create, list and revoke API keys.", no_args_is_help=True, add_completion=False
)


@app.command("create")
@one_line_errors
def create(
    name: str = typer.Option(..., "--name", help="What the key is for (shown by `keys list`)."),
) -> None:
    """Create a key and print it, alone on the last line: it is not shown again."""
    with database(load_settings()) as (db, _):
        row, plaintext = db.run_sync(create_key, name)
    typer.echo(f"created API key {row.id} ({row.name}); it is shown only now:")
    typer.echo(plaintext)


@app.command("list")
@one_line_errors
def list_() -> None:
    """List keys by id, name and prefix (never the keys themselves)."""
    with database(load_settings()) as (db, _):
        rows = db.read_sync(list_keys)
    if not rows:
        typer.echo("no API keys: create one with `bobbin keys create --name NAME`")
        return
    print_table(
        ("id", "name", "prefix", "created", "revoked"),
        [(r.id, r.name, r.prefix, _when(r.created_at), _when(r.revoked_at)) for r in rows],
    )


@app.command("revoke")
@one_line_errors
def revoke(
    key_id: str = typer.Argument(..., help="The key's id, from `bobbin keys list`."),
) -> None:
    """Revoke a key: requests with it answer 401 from now on."""
    with database(load_settings()) as (db, _):
        row = db.run_sync(revoke_key, key_id)
    typer.echo(f"revoked API key {row.id} ({row.name})")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") if moment else "-"
