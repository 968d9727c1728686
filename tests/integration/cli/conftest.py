"""Running ``bobbin`` commands against the test's database and Redis.

``bobbin`` runs in process through typer's CliRunner, with the environment a
real process would get (tests/processes.py ``env_for``) and no provider
variable or stray ``BOBBIN_*`` leaking in from the machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

from cli.main import app
from shared.settings import Settings
from tests.processes import env_for

PROVIDER_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "BOBBIN_LOCAL_BASE_URL")

Bobbin = Callable[..., Result]


def cli_env(settings: Settings, **extra: str | None) -> dict[str, str | None]:
    """The environment of a ``bobbin`` process for ``settings``; None unsets a variable."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("BOBBIN_")}
    env.update(env_for(settings))
    env.update({var: None for var in PROVIDER_VARS})
    env.update(extra)
    return env


@pytest.fixture
def bobbin(settings: Settings) -> Bobbin:
    """``bobbin(*args, input=None, **env)`` runs a command; env values override (None unsets)."""

    def run(*args: str, input: str | None = None, **env: str | None) -> Result:
        return CliRunner().invoke(app, list(args), input=input, env=cli_env(settings, **env))

    return run


def one_line_error(result: Result) -> str:
    """The command failed with exactly one line on stderr and no traceback; returns the line."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
