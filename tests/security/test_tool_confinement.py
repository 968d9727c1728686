"""Tools, driven by a model through a real worker process: the file tools cannot read or write
outside the working directory (traversal, absolute paths, symlinks, hard links, NUL bytes),
and ``bash`` runs in the sandbox (nothing of the worker, its data or its network), with a
timeout and an output cap.

(``tests/unit/shared/tools/`` proves each rule on the tool functions; this proves the
deployed worker applies them, with the worker's own secrets in its environment.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import MakeCluster, api_client, new_agents
from tests.e2e.flows import send, wait_turn
from tests.fakellm import Reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WORKER_SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-env-canary-5d1e",
    "OPENAI_API_KEY": "sk-openai-env-canary-77c2",
    "AWS_SECRET_ACCESS_KEY": "aws-env-canary-0b9f",
    "GITHUB_TOKEN": "ghp-env-canary-3a4c",
    "DB_PASSWORD": "db-env-canary-e61d",
    "BOBBIN_BOOTSTRAP_API_KEY": "bobbin-env-canary-91aa",
}
OUTPUT_CAP = 64_000  # ToolContext.output_cap_bytes


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A working directory whose links lead outside it, and a secret file outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(f"TOP-SECRET-{uuid.uuid4().hex}\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "ok.txt").write_text("inside\n")
    (workspace / "link_file").symlink_to(secret)
    (workspace / "link_dir").symlink_to(outside, target_is_directory=True)
    os.link(secret, workspace / "hard.txt")
    return {"outside": outside, "secret": secret, "workspace": workspace}


def attacks(outside: Path) -> list[tuple[str, dict[str, Any]]]:
    secret = outside / "secret.txt"
    return [
        ("file_read", {"path": "../outside/secret.txt"}),
        ("file_read", {"path": str(secret)}),
        ("file_read", {"path": "link_file"}),
        ("file_read", {"path": "link_dir/secret.txt"}),
        ("file_read", {"path": "hard.txt"}),
        ("file_read", {"path": "ok.txt\x00../outside/secret.txt"}),
        ("file_read", {"path": "./../outside/secret.txt"}),
        ("file_list", {"path": ".."}),
        ("file_list", {"path": "link_dir"}),
        ("file_find", {"pattern": "../outside/*"}),
        ("file_search", {"pattern": "TOP-SECRET", "path": "link_dir"}),
        ("file_write", {"path": "../outside/written.txt", "content": "x"}),
        ("file_write", {"path": str(outside / "absolute.txt"), "content": "x"}),
        ("file_write", {"path": "link_dir/through_link.txt", "content": "x"}),
        ("file_write", {"path": "link_file", "content": "overwritten"}),
        ("file_write", {"path": "hard.txt", "content": "overwritten"}),
        ("file_write", {"path": "nul\x00.txt", "content": "x"}),
        ("file_edit", {"path": "hard.txt", "old_text": "TOP", "new_text": "OWNED"}),
    ]


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_model_driven_tools_stay_inside_the_working_directory(
    make_cluster: MakeCluster, layout: dict[str, Path], db: str
) -> None:
    outside, secret, workspace = layout["outside"], layout["secret"], layout["workspace"]
    before = secret.read_text()
    cluster = make_cluster(workers=1, extra_env=WORKER_SECRETS, db=db)
    assert cluster.llm is not None
    calls = attacks(outside)
    cluster.llm.script(Reply(tool_calls=calls), match="escape")  # type: ignore[arg-type]
    policies = {"file_write": "allow", "file_edit": "allow"}
    async with api_client(cluster) as client:
        [agent] = await new_agents(
            client, cluster, policies=policies, working_directory=str(workspace)
        )
        done = await wait_turn(client, (await send(client, agent, "escape"))["id"], 60)
        events = (await client.get(f"/v1/agents/{agent}/events")).json()["events"]
        responses = [json.dumps(events), json.dumps(done)]

    assert done["status"] == "completed", done
    results = [e["data"] for e in events if e["type"] == "tool_result"]
    assert len(results) == len(calls)
    for (tool, args), result in zip(calls, results, strict=True):
        assert result["status"] == "failed", (tool, args, result)
    assert secret.read_text() == before  # not overwritten or edited through any link
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]  # nothing written
    assert not any(before.strip() in text for text in responses)  # never read back
    assert before.strip() not in cluster.logs()[next(n for n in cluster.logs() if "worker" in n)]


async def test_bash_runs_sandboxed_with_a_timeout_and_an_output_cap(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """What a model tried on a worker: its parent's environment, the data directory, the
    database and Redis and the API on loopback, daemons that outlive the call."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    cluster = make_cluster(workers=1, extra_env=WORKER_SECRETS)
    assert cluster.llm is not None and cluster.settings is not None and cluster.api is not None
    data_dir = cluster.settings.data_dir
    ports = [cluster.redis.port, 5432, cluster.api.port]
    daemon = f"sleep 3{uuid.uuid4().int % 10**6:06d}"
    calls = [
        ("bash", {"command": "env; tr '\\0' '\\n' < /proc/$PPID/environ; cat /proc/*/environ"}),
        ("bash", {"command": f"ls -la {data_dir}; cat {data_dir}/secret.key {data_dir}/bobbin.db"}),
        (
            "bash",
            {
                "command": "; ".join(
                    f"(exec 3<>/dev/tcp/127.0.0.1/{p}) && echo OPEN {p}" for p in ports
                )
            },
        ),
        ("bash", {"command": f"setsid {daemon} & nohup {daemon} & ( ( {daemon} & ) & ); echo ok"}),
        ("bash", {"command": "sleep 30; echo never", "timeout_s": 1}),
        ("bash", {"command": "yes 0123456789 | head -c 2000000; echo; echo END"}),
    ]
    cluster.llm.script(Reply(tool_calls=calls), match="shell")  # type: ignore[arg-type]
    async with api_client(cluster) as client:
        [agent] = await new_agents(
            client, cluster, policies={"bash": "allow"}, working_directory=str(workspace)
        )
        started = time.monotonic()
        done = await wait_turn(client, (await send(client, agent, "shell"))["id"], 60)
        took_s = time.monotonic() - started
        events = (await client.get(f"/v1/agents/{agent}/events")).json()["events"]

    assert done["status"] == "completed", done
    env, data, network, daemons, slow, flood = [
        e["data"] for e in events if e["type"] == "tool_result"
    ]
    secrets = [*WORKER_SECRETS.values(), cluster.settings.secret_key.get_secret_value()]  # type: ignore[union-attr]
    assert env["status"] == "completed" and "PATH=" in env["content"]
    assert f"HOME={workspace.resolve()}" in env["content"]
    assert not [s for s in secrets if s in env["content"]]
    assert "BOBBIN_" not in env["content"]
    assert data["content"].count("No such file or directory") == 3, data["content"]
    assert "OPEN" not in network["content"], network["content"]
    assert daemons["content"].startswith("ok")
    host = subprocess.run(["pgrep", "-f", daemon], capture_output=True, text=True)
    assert host.stdout == "", f"{daemon} outlived its command: {host.stdout}"
    assert slow["status"] == "failed" and "timed out after 1 s" in slow["content"]
    assert "never" not in slow["content"]
    assert took_s < 20  # the 30 s sleep was killed, not waited for
    assert flood["status"] == "completed"
    assert len(flood["content"].encode()) < OUTPUT_CAP + 1000  # capped, with a note
    assert flood["content"].startswith("0123456789") and "\nEND\n" in flood["content"]
    assert "bytes of output omitted" in flood["content"]
