"""RayJobs end to end on the local node agent: real Ray pods (head, submitter) run as processes in their own
network namespaces; the operator reaches each head's dashboard through the API server's service proxy
(KubeRay's --use-kubernetes-proxy), since the host has no cluster DNS.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rayop.node.agent import NodeAgent
from rayop.node.locate import locate
from rayop.node.logs import LogOptions, LogReader
from rayop.ray.dashboard import DashboardClient
from rayop.runtime.client import ApiClient
from tests.e2e import test_node_agent as na
from tests.helpers import eventually
from tests.integration.rayjobs import RAYCLUSTERS, RAYJOBS, get_rj, operator, rayjob, status_of

# The node agent's plane, network and namespace fixtures, shared by re-export.
pytestmark = na.pytestmark
node_net = na.node_net
node_plane = na.node_plane
kube = na.kube
ns = na.ns

T = 240.0
HELLO = "python -c \"import ray; ray.init(); print('hello from a rayop pod', int(ray.cluster_resources()['CPU']))\""


@pytest.fixture(scope="module")
async def node(node_plane: Any, node_net: dict[str, str]) -> AsyncIterator[NodeAgent]:
    state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
    # Ray 2.60 turns token auth on when ~/.ray/auth_token exists, and pods share this host's home.
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    agent, task = await na.start_agent(node_plane, node_net, state, cpu="16", memory="16Gi", default_env=env)
    try:
        yield agent
    finally:
        leftovers = await na.stop_agent(agent, task)
        assert leftovers == [], f"netns left behind: {leftovers}"


async def phases(kube: ApiClient, ns: str, name: str, t0: float) -> dict[str, float]:
    """Poll the RayJob and note when each phase was first seen (seconds since t0)."""
    seen: dict[str, float] = {}

    async def done() -> bool:
        st = status_of(await get_rj(kube, ns, name))
        now = time.monotonic() - t0
        if st.get("dashboardURL"):
            seen.setdefault("cluster_ready", now)
        if st.get("jobStatus") in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED"):
            seen.setdefault("submitted", now)
        if st.get("jobStatus") in ("RUNNING", "SUCCEEDED", "FAILED"):
            seen.setdefault("running", now)
        if st.get("jobDeploymentStatus") in ("Complete", "Failed"):
            seen.setdefault("finished", now)
            return True
        return False

    await eventually(done, T, interval=0.1, what=f"{name} finished")
    return seen


@pytest.mark.parametrize("mode", ["K8sJobMode", "HTTPMode", "SidecarMode"])
async def test_rayjob_runs_on_real_pods(node: NodeAgent, kube: ApiClient, ns: str, mode: str) -> None:
    name = "nj-" + mode[:4].lower()
    async with operator(kube, ns, use_proxy=True) as mgr:
        t0 = time.monotonic()
        await kube.create(
            RAYJOBS,
            rayjob(
                name,
                ns,
                entrypoint=HELLO,
                submissionMode=mode,
                shutdownAfterJobFinishes=True,
                ttlSecondsAfterFinished=15,
            ),
        )
        seen = await phases(kube, ns, name, t0)
        st = status_of(await get_rj(kube, ns, name))
        assert (st["jobDeploymentStatus"], st["jobStatus"]) == ("Complete", "SUCCEEDED"), st
        dash = DashboardClient.via_proxy(mgr.client, ns, f"{st['rayClusterName']}-head-svc")
        try:
            logs = await dash.get_job_logs(st["jobId"])
        finally:
            await dash.close()
        assert "hello from a rayop pod 1" in logs
        if mode == "K8sJobMode":
            loc = await locate(kube, ns, await submitter_pod(kube, ns, name), None)
            out = LogReader(loc.log_path, LogOptions()).read(1 << 30).decode(errors="replace")
            assert "hello from a rayop pod 1" in out
        await eventually(lambda: _gone(kube, st["rayClusterName"], ns), 120, what="cluster deleted")
    print(f"\n{mode} phases (s since apply): {seen}")


async def submitter_pod(kube: ApiClient, ns: str, job: str) -> str:
    from rayop.runtime.client import PODS

    pods = (await kube.list(PODS, ns, label_selector=f"batch.kubernetes.io/job-name={job}"))["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return str(pods[0]["metadata"]["name"])


async def _gone(kube: ApiClient, name: str, ns: str) -> bool:
    return await kube.get_or_none(RAYCLUSTERS, name, ns) is None


async def test_example_rayjob_manifest(node: NodeAgent, kube: ApiClient, ns: str) -> None:
    """examples/rayjob.yaml as `make demo` applies it: a head and a worker, the script from a ConfigMap."""
    import yaml

    from rayop.runtime.client import CONFIGMAPS

    docs = list(yaml.safe_load_all((na.REPO / "examples" / "rayjob.yaml").read_text()))
    async with operator(kube, ns, use_proxy=True) as mgr:
        for d in docs:
            d["metadata"]["namespace"] = ns
            await kube.create(CONFIGMAPS if d["kind"] == "ConfigMap" else RAYJOBS, d, ns)
        name = next(d["metadata"]["name"] for d in docs if d["kind"] == "RayJob")
        seen = await phases(kube, ns, name, time.monotonic())
        st = status_of(await get_rj(kube, ns, name))
        assert (st["jobDeploymentStatus"], st["jobStatus"]) == ("Complete", "SUCCEEDED"), st
        dash = DashboardClient.via_proxy(mgr.client, ns, f"{st['rayClusterName']}-head-svc")
        try:
            logs = await dash.get_job_logs(st["jobId"])
        finally:
            await dash.close()
        assert "17984 primes below 200000" in logs, logs[-2000:]
    print(f"\nexample phases: {seen}")
