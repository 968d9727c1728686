"""Every command refuses a missing or misconfigured dependency with one line, no traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import offline
from cli.common import free_port
from tests.integration.cli.conftest import Bobbin, one_line_error

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_off_loopback_without_any_key_refuses_to_start(bobbin: Bobbin) -> None:
    line = one_line_error(bobbin("serve", "--host", "0.0.0.0", "--port", "1"))

    assert "BOBBIN_BOOTSTRAP_API_KEY" in line


def test_serve_off_loopback_with_a_bootstrap_key_passes_the_key_check(
    bobbin: Bobbin, busy_port: int
) -> None:
    # The port is taken, so the command stops at the next check instead of serving.
    result = bobbin(
        "serve", "--host", "0.0.0.0", "--port", str(busy_port),
        BOBBIN_BOOTSTRAP_API_KEY="bob_bootstrap-key-for-the-test",
    )  # fmt: skip

    assert "in use" in one_line_error(result)


def test_serve_without_auth_is_refused_off_loopback(bobbin: Bobbin) -> None:
    line = one_line_error(bobbin("serve", "--host", "0.0.0.0", "--no-auth"))

    assert "--no-auth" in line


def test_serve_on_a_port_in_use_fails_with_one_line(bobbin: Bobbin, busy_port: int) -> None:
    line = one_line_error(bobbin("serve", "--port", str(busy_port)))

    assert str(busy_port) in line and "in use" in line


def test_dev_on_a_port_in_use_fails_before_starting_anything(
    bobbin: Bobbin, busy_port: int
) -> None:
    line = one_line_error(bobbin("dev", "--port", str(busy_port), "--no-demo"))

    assert "in use" in line


@pytest.mark.parametrize("command", [["keys", "list"], ["worker"], ["serve"]])
def test_a_postgres_url_without_a_secret_key_fails_with_one_line(
    bobbin: Bobbin, command: list[str]
) -> None:
    line = one_line_error(bobbin(*command, BOBBIN_DATABASE_URL=PG_URL, BOBBIN_SECRET_KEY=None))

    assert "BOBBIN_SECRET_KEY" in line


def test_a_secret_key_other_than_the_databases_fails_with_one_line(bobbin: Bobbin) -> None:
    assert bobbin("keys", "list").exit_code == 0  # records the key's fingerprint

    other = "another-secret-that-is-long-enough-0123456789"
    line = one_line_error(bobbin("keys", "list", BOBBIN_SECRET_KEY=other))

    assert "BOBBIN_SECRET_KEY" in line and "does not match" in line


def test_an_unreachable_database_fails_with_one_line(bobbin: Bobbin) -> None:
    url = "postgresql://postgres@127.0.0.1:9/nothing"

    line = one_line_error(bobbin("keys", "list", BOBBIN_DATABASE_URL=url))

    assert "database" in line and "127.0.0.1:9" in line


@pytest.mark.parametrize("command", [["worker"], ["serve"]])
def test_redis_not_answering_fails_with_one_line(bobbin: Bobbin, command: list[str]) -> None:
    line = one_line_error(bobbin(*command, BOBBIN_REDIS_URL="redis://127.0.0.1:9/0"))

    assert "Redis" in line and "BOBBIN_REDIS_URL" in line


def test_chat_without_an_api_key_fails_with_one_line(bobbin: Bobbin) -> None:
    line = one_line_error(bobbin("chat", "new", "hello"))

    assert "BOBBIN_API_KEY" in line


def test_chat_with_no_api_listening_fails_with_one_line(bobbin: Bobbin) -> None:
    result = bobbin(
        "chat", "new", "hello", BOBBIN_API_KEY="bob_x", BOBBIN_API_URL="http://127.0.0.1:9"
    )

    assert "does not answer" in one_line_error(result)


def test_dev_without_a_provider_or_the_offline_model_fails_with_one_line(
    bobbin: Bobbin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offline, "missing_reason", lambda: "the offline model is not installed")

    line = one_line_error(bobbin("dev", "--port", str(free_port()), "--no-demo"))

    assert "ANTHROPIC_API_KEY" in line and "not installed" in line


def test_a_database_bobbin_cannot_run_on_is_named_in_one_line(bobbin: Bobbin) -> None:
    line = one_line_error(bobbin("keys", "list", BOBBIN_DATABASE_URL="mysql://u@localhost/x"))

    assert line == (
        "error: BOBBIN_DATABASE_URL: Bobbin runs on SQLite (sqlite:///PATH) or "
        "PostgreSQL (postgresql://...), not mysql"
    )


def test_the_database_is_checked_before_the_secret_key(bobbin: Bobbin) -> None:
    url = "postgresql://postgres@127.0.0.1:9/nothing"

    line = one_line_error(bobbin("keys", "list", BOBBIN_DATABASE_URL=url, BOBBIN_SECRET_KEY=None))

    assert "does not answer" in line and "127.0.0.1:9" in line
    assert "SECRET_KEY" not in line


def test_a_database_that_answers_no_is_not_said_to_be_silent(bobbin: Bobbin) -> None:
    url = "postgresql://no_such_role@127.0.0.1:5432/test"

    line = one_line_error(bobbin("keys", "list", BOBBIN_DATABASE_URL=url))

    assert "refused the connection" in line and 'role "no_such_role" does not exist' in line


def test_a_sqlite_path_in_a_missing_directory_creates_nothing(
    bobbin: Bobbin, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such"

    line = one_line_error(bobbin("keys", "list", BOBBIN_DATABASE_URL=f"sqlite:///{missing}/x.db"))

    assert f"{missing}/x.db does not exist" in line
    assert not (tmp_path / "no").exists()


def test_a_sqlite_file_named_in_the_data_directory_gets_its_directory_made(
    bobbin: Bobbin, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"  # what a deployment names explicitly: its own data dir

    result = bobbin(
        "keys", "list",
        BOBBIN_DATA_DIR=str(data_dir), BOBBIN_DATABASE_URL=f"sqlite:///{data_dir}/bobbin.db",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert (data_dir / "bobbin.db").is_file()


def test_the_redis_hint_names_the_configured_port(bobbin: Bobbin) -> None:
    line = one_line_error(bobbin("serve", BOBBIN_REDIS_URL="redis://127.0.0.1:9/0"))

    assert "redis-server --port 9" in line
