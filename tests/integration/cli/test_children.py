"""A child the CLI started dies with it, even when the CLI is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import children
from tests.processes import ROOT

PARENT = """
import sys, time
from pathlib import Path
from cli.children import Child
child = Child("a sleeper", ["sleep", "60"], Path(sys.argv[1])).start()
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(children.SETPRIV is None, reason="setpriv (util-linux) is not installed")
def test_a_child_does_not_outlive_a_parent_killed_outright(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "sleeper.log")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    os.kill(child_pid, 0)  # running

    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    parent.stdout.close()

    deadline = time.monotonic() + 5
    while _alive(child_pid):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: its parent (now init) has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
