"""The command table: a mistyped command gets the nearest names."""

from __future__ import annotations

from typer.testing import CliRunner

from cli.main import app


def test_a_mistyped_command_is_answered_with_the_nearest_names() -> None:
    result = CliRunner().invoke(app, ["chta", "hello"])

    assert result.exit_code == 2
    assert "No such command 'chta'. Did you mean 'chat'?" in result.output


def test_an_unknown_command_far_from_any_is_refused_plainly() -> None:
    result = CliRunner().invoke(app, ["zzzzzz"])

    assert result.exit_code == 2
    assert "No such command 'zzzzzz'." in result.output
    assert "Did you mean" not in result.output
