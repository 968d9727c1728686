"""``bobbin providers``: instances from flags or the environment, never showing a key."""

from __future__ import annotations

import pytest

from shared.crypto import Cipher, load_fernet_key
from shared.db import Database
from shared.providers.instances import list_instances, load_instance_and_credential
from shared.settings import Settings
from tests.fakellm import FakeLLM
from tests.integration.cli.conftest import Bobbin, one_line_error

ANTHROPIC_KEY = "sk-ant-secret-0123456789"
OPENAI_KEY = "sk-openai-secret-0123456789"


def credential(db: Database, settings: Settings, instance_id: str) -> str | None:
    found = db.read_sync(load_instance_and_credential, instance_id)
    assert found is not None
    cipher = Cipher(load_fernet_key(settings, loopback=True))
    return cipher.decrypt(found[1]) if found[1] else None


def test_add_from_env_upserts_the_fixed_ids_and_never_prints_a_key(
    bobbin: Bobbin, db: Database, settings: Settings
) -> None:
    env = {
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "OPENAI_API_KEY": OPENAI_KEY,
        "BOBBIN_LOCAL_BASE_URL": "http://127.0.0.1:11434/v1",
    }
    first = bobbin("providers", "add", "--from-env", **env)
    again = bobbin("providers", "add", "--from-env", **{**env, "OPENAI_API_KEY": "sk-rotated-key"})
    listed = bobbin("providers", "list", **env)

    assert first.exit_code == again.exit_code == listed.exit_code == 0, first.output
    views = {v.id: v for v in db.read_sync(list_instances, None, 100)}
    assert set(views) == {"env-anthropic", "env-openai", "env-local"}
    assert views["env-local"].catalog_provider_id == "openai-compatible"
    assert views["env-local"].base_url == "http://127.0.0.1:11434/v1"
    assert not views["env-local"].has_credential
    assert credential(db, settings, "env-anthropic") == ANTHROPIC_KEY
    assert credential(db, settings, "env-openai") == "sk-rotated-key"
    for result in (first, again, listed):
        for secret in (ANTHROPIC_KEY, OPENAI_KEY, "sk-rotated-key"):
            assert secret not in result.output
    assert all(i in listed.stdout for i in views)


def test_add_from_env_with_nothing_set_adds_nothing(bobbin: Bobbin, db: Database) -> None:
    result = bobbin("providers", "add", "--from-env")

    assert result.exit_code == 0, result.output
    assert db.read_sync(list_instances, None, 100) == []


def test_add_reads_the_key_from_stdin_and_keeps_a_fixed_id(
    bobbin: Bobbin, db: Database, settings: Settings
) -> None:
    result = bobbin(
        "providers", "add", "--name", "team", "--catalog-provider-id", "anthropic",
        "--id", "team-anthropic", input=ANTHROPIC_KEY + "\n",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert ANTHROPIC_KEY not in result.output
    assert credential(db, settings, "team-anthropic") == ANTHROPIC_KEY


def test_add_with_an_unknown_catalog_provider_fails_with_one_line(bobbin: Bobbin) -> None:
    result = bobbin(
        "providers", "add", "--name", "x", "--catalog-provider-id", "nope", "--api-key", "k"
    )

    assert "anthropic" in one_line_error(result)


def add_fake(bobbin: Bobbin, llm: FakeLLM, kind: str, key: str = "sk-fake") -> str:
    base_url = llm.base_url if kind == "anthropic" else llm.base_url + "/v1"
    result = bobbin(
        "providers", "add", "--name", f"fake {kind}", "--catalog-provider-id", kind,
        "--base-url", base_url, "--api-key", key, "--id", f"fake-{kind}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return f"fake-{kind}"


@pytest.mark.parametrize("kind", ["anthropic", "openai", "openai-compatible"])
def test_providers_test_lists_the_models_of_a_working_endpoint(
    bobbin: Bobbin, llm: FakeLLM, kind: str
) -> None:
    instance_id = add_fake(bobbin, llm, kind)

    result = bobbin("providers", "test", instance_id)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok")
    assert "fake-large" in result.stdout and "fake-small" in result.stdout


def test_providers_test_reports_the_error_code_of_a_refused_key(
    bobbin: Bobbin, llm: FakeLLM
) -> None:
    llm.configure(api_keys=["the-right-key"])
    instance_id = add_fake(bobbin, llm, "openai", key="a-wrong-key")

    result = bobbin("providers", "test", instance_id)

    assert result.exit_code == 1
    assert "provider_auth_failed" in result.stdout
    assert "a-wrong-key" not in result.output


def test_providers_test_reports_an_unreachable_endpoint(bobbin: Bobbin) -> None:
    bobbin(
        "providers", "add", "--name", "gone", "--catalog-provider-id", "openai-compatible",
        "--base-url", "http://127.0.0.1:9/v1", "--id", "gone",
    )  # fmt: skip

    result = bobbin("providers", "test", "gone")

    assert result.exit_code == 1
    assert "provider_unreachable" in result.stdout


def test_providers_test_of_an_unknown_instance_says_so(bobbin: Bobbin) -> None:
    result = bobbin("providers", "test", "nope")

    assert result.exit_code == 1
    assert "provider_instance_not_found" in result.stdout
