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
from cli.common import CommandFailed
from cli.dev import hold_data_dir
from tests.processes import ROOT

PARENT = """
import sys, time
from pathlib import Path
from cli.children import Child
child = Child("a sleeper", ["sleep", "60"], Path(sys.argv[1])).start()
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not children.dies_with_parent(), reason="no setpriv --pdeathsig here")
def test_a_child_does_not_outlive_a_parent_killed_outright(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "sleeper.log")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    # setpriv arms the death signal, then execs the command: kill the parent
    # only once the child runs ``sleep``, or the kill may land before the arming.
    deadline = time.monotonic() + 5
    while _command(child_pid) != "sleep":
        assert time.monotonic() < deadline, "the child never started its command"
        time.sleep(0.01)

    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    parent.stdout.close()

    deadline = time.monotonic() + 5
    while _alive(child_pid):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: its parent (now init) has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


HOLDER = """
import sys, time
from pathlib import Path
from cli.children import Child
from cli.dev import hold_data_dir
with hold_data_dir(Path(sys.argv[1])):
    child = Child("a slow stopper", ["sh", "-c", "trap '' TERM; exec sleep 60"], Path(sys.argv[2]))
    print(child.start().pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(not children.dies_with_parent(), reason="no setpriv --pdeathsig here")
def test_the_data_directory_stays_held_until_the_last_child_of_a_killed_dev_exits(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    parent = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir), str(tmp_path / "stopper.log")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        parent.stdout.close()

        # The child ignores its death signal, as a worker draining its turns takes a while.
        still_stopping = r"that ended \(PID \d+\) are still stopping"
        with pytest.raises(CommandFailed, match=still_stopping), hold_data_dir(data_dir):
            pass
    finally:
        os.kill(child_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(child_pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    with hold_data_dir(data_dir):  # the last child gone, the directory is free
        pass
