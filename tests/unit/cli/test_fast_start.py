"""``bobbin --help`` and ``bobbin chat`` start fast: they import no database, provider SDK,
server or queue. Counted in imported modules (a fresh interpreter), not timed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT

HEAVY = ("sqlalchemy", "sqlmodel", "anthropic", "openai", "celery", "fastapi", "uvicorn", "redis")
PROBE = """
import json, sys
sys.argv = ["bobbin", *sys.argv[1:]]
from cli.main import app
try:
    app()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, timeout=60, check=True
    )
    modules: list[str] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return modules


@pytest.mark.parametrize(
    ("args", "bound"),
    [(("--help",), 250), (("chat", "--help"), 700)],
)
def test_a_command_imports_only_what_it_uses(args: tuple[str, ...], bound: int) -> None:
    modules = imported_by(*args)
    top = {m.split(".")[0] for m in modules}
    assert not top & set(HEAVY), sorted(top & set(HEAVY))
    assert len(modules) < bound, len(modules)


def test_help_lists_every_command_without_importing_them() -> None:
    modules = imported_by("--help")
    assert not [m for m in modules if m.startswith("cli.") and m != "cli.main"]
