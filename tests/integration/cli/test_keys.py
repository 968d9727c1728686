"""``bobbin keys``: keys are shown once, listed by prefix only, and revoked at once."""

from __future__ import annotations

from shared.apikeys import verify_key
from shared.db import Database
from tests.integration.cli.conftest import Bobbin, one_line_error


def test_keys_create_prints_the_key_alone_on_the_last_line(bobbin: Bobbin, db: Database) -> None:
    result = bobbin("keys", "create", "--name", "ci")

    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("bob_") and " " not in key
    row = db.read_sync(verify_key, key)
    assert row is not None and row.name == "ci"


def test_keys_list_shows_id_name_and_prefix_but_never_the_key(bobbin: Bobbin, db: Database) -> None:
    key = bobbin("keys", "create", "--name", "laptop").stdout.strip().splitlines()[-1]
    row = db.read_sync(verify_key, key)
    assert row is not None

    listed = bobbin("keys", "list")

    assert listed.exit_code == 0, listed.output
    assert row.id in listed.stdout and "laptop" in listed.stdout and row.prefix in listed.stdout
    assert key not in listed.stdout
    assert key[: len(row.prefix) + 4] not in listed.stdout  # no more than the prefix shows


def test_keys_revoke_stops_the_key_at_once(bobbin: Bobbin, db: Database) -> None:
    key = bobbin("keys", "create", "--name", "old").stdout.strip().splitlines()[-1]
    row = db.read_sync(verify_key, key)
    assert row is not None

    revoked = bobbin("keys", "revoke", row.id)

    assert revoked.exit_code == 0, revoked.output
    assert db.read_sync(verify_key, key) is None
    line = [ln for ln in bobbin("keys", "list").stdout.splitlines() if row.id in ln][0]
    assert line.rstrip().split()[-1] != "-"  # the revoked column holds a date


def test_keys_revoke_of_an_unknown_id_fails_with_one_line(bobbin: Bobbin) -> None:
    line = one_line_error(bobbin("keys", "revoke", "key_nope"))

    assert "key_nope" in line
