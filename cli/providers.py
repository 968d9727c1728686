"""``bobbin providers``: add (or upsert from the environment), list and test provider instances."""

from __future__ import annotations

import asyncio
import sys

import typer

from cli.common import database, fail, load_settings, one_line_errors, print_table
from cli.environment import InstanceSpec, env_instances
from shared.crypto import Cipher
from shared.db import Database
from shared.errors import ProviderError
from shared.providers.catalog import load_catalog
from shared.providers.instances import (
    InstanceView,
    create_instance,
    list_instances,
    load_instance_and_credential,
)

app = typer.Typer(
    help="Add, list and test LLM provider instances.", no_args_is_help=True, add_completion=False
)


def save_instance(db: Database, cipher: Cipher, spec: InstanceSpec) -> InstanceView:
    """Create the instance, or update it in place when ``spec.id`` exists; encrypts the key."""
    encrypted = cipher.encrypt(spec.api_key) if spec.api_key else None
    return db.run_sync(
        lambda s: create_instance(
            s,
            name=spec.name,
            catalog_provider_id=spec.catalog_provider_id,
            base_url=spec.base_url,
            encrypted_key=encrypted,
            instance_id=spec.id,
            upsert=spec.id is not None,
        )
    )


def print_instances(views: list[InstanceView]) -> None:
    print_table(
        ("id", "catalog provider", "credential", "base url", "name"),
        [
            (v.id, v.catalog_provider_id, _yes(v.has_credential), v.base_url or "-", v.name)
            for v in views
        ],
    )


@app.command("add")
@one_line_errors
def add(
    name: str | None = typer.Option(None, "--name", help="A name to show."),
    catalog_provider_id: str | None = typer.Option(
        None, "--catalog-provider-id", help="anthropic, openai or openai-compatible."
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="Default: the catalog's."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="The credential ('-': read it from stdin). Without it, anthropic and openai "
        "read it from stdin; openai-compatible servers go without.",
    ),
    instance_id: str | None = typer.Option(None, "--id", help="A fixed id (updates it if taken)."),
    from_env: bool = typer.Option(
        False,
        "--from-env",
        help="Upsert env-anthropic, env-openai and env-local from ANTHROPIC_API_KEY, "
        "OPENAI_API_KEY and BOBBIN_LOCAL_BASE_URL.",
    ),
) -> None:
    """Add a provider instance; its credential is stored encrypted and never shown again."""
    if from_env:
        _add_from_env()
        return
    if not name or not catalog_provider_id:
        fail("give --name and --catalog-provider-id (or --from-env)")
    catalog = load_catalog().provider(catalog_provider_id)
    if catalog is None:
        known = ", ".join(p.id for p in load_catalog().providers)
        fail(f"unknown --catalog-provider-id {catalog_provider_id!r}: use one of {known}")
    from_stdin = api_key == "-" or (api_key is None and catalog.needs_credential)
    key = _read_key() if from_stdin else api_key
    spec = InstanceSpec(instance_id, name, catalog_provider_id, key or None, base_url)
    with database(load_settings()) as (db, cipher):
        view = save_instance(db, cipher, spec)
    typer.echo(f"provider instance {view.id} saved (credential: {_yes(view.has_credential)})")


def _read_key() -> str | None:
    """The key from stdin: a hidden prompt on a terminal, else the first line."""
    if sys.stdin.isatty():
        return typer.prompt("API key", hide_input=True).strip() or None
    return sys.stdin.readline().strip() or None


def _add_from_env() -> None:
    specs = env_instances()
    if not specs:
        typer.echo("nothing to add: set ANTHROPIC_API_KEY, OPENAI_API_KEY or BOBBIN_LOCAL_BASE_URL")
        return
    with database(load_settings()) as (db, cipher):
        for spec in specs:
            view = save_instance(db, cipher, spec)
            typer.echo(
                f"provider instance {view.id} upserted ({view.catalog_provider_id}, "
                f"credential: {_yes(view.has_credential)})"
            )


@app.command("list")
@one_line_errors
def list_() -> None:
    """List provider instances (never their credentials)."""
    with database(load_settings()) as (db, _):
        views = db.read_sync(list_instances, None, 1000)
    if not views:
        typer.echo("no provider instances: add one with `bobbin providers add`")
        return
    print_instances(views)


@app.command("test")
@one_line_errors
def test(instance_id: str = typer.Argument(..., help="The instance's id.")) -> None:
    """Call the instance's endpoint (list its models) and say whether it works."""
    with database(load_settings()) as (db, cipher):
        outcome = asyncio.run(list_models(db, cipher, instance_id))
    if isinstance(outcome, ProviderError):
        typer.echo(f"failed: {outcome.code}: {outcome.message}")
        raise typer.Exit(1)
    typer.echo(f"ok: {len(outcome)} models")
    for model in outcome:
        typer.echo(f"  {model}")


async def list_models(db: Database, cipher: Cipher, instance_id: str) -> list[str] | ProviderError:
    """The models the instance serves, or the error its provider raised (with its code)."""
    # Imported here: the SDKs under the registry take a second to import.
    from shared.http import HttpPools
    from shared.providers.registry import ProviderRegistry

    async with HttpPools(4) as http:
        registry = ProviderRegistry(db, cipher, http)
        try:
            provider = await registry.create_provider_from_instance_and_model(
                instance_id, _any_model(db, instance_id)
            )
            models: list[str] = await provider.list_models()
            return models
        except ProviderError as exc:
            return exc


def _any_model(db: Database, instance_id: str) -> str:
    """A model id the registry accepts for the instance (listing needs none in particular)."""
    found = db.read_sync(load_instance_and_credential, instance_id)
    catalog = load_catalog().provider(found[0].catalog_provider_id) if found else None
    return catalog.models[0].id if catalog and catalog.models else "default"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
