"""The API under fuzzing: a real API process (own Redis, SQLite, fake LLM, no worker) with ids
that exist for the fuzzer to aim at.

Its processes get proxy variables pointing at a closed loopback port, with only
loopback exempt: whatever base URL a fuzzed provider instance is given, a
connectivity test can reach nothing but 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.chaos.cluster import Cluster, ClusterOptions
from tests.fuzz.schema import Target

DEAD_PROXY = "http://127.0.0.1:9"
LOOPBACK_ONLY = {
    name: DEAD_PROXY
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
} | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def start_target(workdir: Path) -> tuple[Cluster, Target]:
    """Start the API (and what it needs) and create one of each resource; stop the cluster."""
    cluster = Cluster(workdir, ClusterOptions(extra_env=LOOPBACK_ONLY)).start(workers=0)
    try:
        assert cluster.api is not None and cluster.llm is not None
        ids = _create_ids(cluster.api.url, cluster.api.headers, cluster.llm.base_url)
    except BaseException:
        cluster.stop()
        raise
    return cluster, Target(cluster.api.url, cluster.api.key, ids)


def _create_ids(base_url: str, headers: dict[str, str], llm_url: str) -> dict[str, str]:
    with requests.Session() as http:
        http.trust_env = False
        http.headers.update(headers)

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            resp = http.post(f"{base_url}{path}", json=body, timeout=10)
            assert resp.status_code in (201, 202), resp.text
            return dict(resp.json())

        instance = post(
            "/v1/provider-instances",
            {
                "name": "fuzz",
                "catalog_provider_id": "anthropic",
                "base_url": llm_url,
                "timeout_s": 5,
                "credential": {"api_key": "sk-fuzz"},
            },
        )
        configuration = {"provider_instance_id": instance["id"], "model_id": "claude-sonnet-4-6"}
        project = post("/v1/projects", {"name": "fuzz", "configuration": configuration})
        session = post(f"/v1/projects/{project['id']}/sessions", {"name": "fuzz"})
        agent = session["coordinator_agent_id"]
        turn = post(f"/v1/agents/{agent}/messages", {"content": "fuzz"})["turn"]
        # Cancelled, so a long poll on it (wait_s) answers at once: no worker runs here.
        http.post(f"{base_url}/v1/turns/{turn['id']}/cancel", timeout=10).raise_for_status()
        return {
            "instance_id": instance["id"],
            "project_id": project["id"],
            "session_id": session["id"],
            "agent_id": agent,
            "turn_id": turn["id"],
        }
