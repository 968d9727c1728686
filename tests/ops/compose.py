"""docker-compose.yml as the tests read it: loaded, interpolated like Compose does, localized.

``interpolate`` implements the forms the file uses (``$$``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?message}``,
``${VAR?message}``). ``localize`` swaps only the addresses that differ
between the compose network and this machine; everything else (commands,
environment) runs as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.processes import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
# What the compose network calls the services the processes talk to.
COMPOSE_DATABASE_URL = re.compile(r"^postgresql://bobbin:[^@]+@postgres:5432/bobbin$")
COMPOSE_REDIS_URL = "redis://redis:6379/0"

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


class MissingVariable(ValueError):
    pass


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with every ``${...}`` replaced as ``docker compose`` would, recursively."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if unset else str(current)
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(replace, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    """The health check as an argv (``CMD`` form, or ``CMD-SHELL`` through sh)."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *argv = test
    if kind == "CMD-SHELL":
        return ["sh", "-c", " ".join(argv)]
    assert kind == "CMD", f"unexpected healthcheck form {kind}"
    return argv


def replace_port(argv: list[str], old: int, new: int) -> list[str]:
    """``argv`` with the port ``old`` (as an argument, ``--port=old`` or ``:old/``) now ``new``."""
    pattern = re.compile(rf"(?<![0-9]){old}(?![0-9])")
    return [pattern.sub(str(new), arg) for arg in argv]
