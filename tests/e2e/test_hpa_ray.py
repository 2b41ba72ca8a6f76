"""Ray's autoscaler and the Kubernetes HPA, together and apart, on the local plane with real Ray: the HPA
sizes a worker group from its Pods' CPU (and rayop removes only idle Ray nodes); the HPA sizes a Serve
deployment's replicas while Ray's autoscaler adds the worker Pods they need; both come back down when the
load stops, and no request fails. The runs are tests/e2e/hpa_scenarios.py, which bench/hpa_timeline.py
also plots; each prints its timeline.

The plane's HPA controller evaluates every 5 s instead of 15 s (docs/local-plane.md); everything else is
as upstream, and the HPAs use the examples' behavior with a 30 s scale-down window.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from rayop.local import metrics_server
from rayop.local.plane import ControlPlane
from rayop.runtime.client import ApiClient, load_kubeconfig
from tests import rbac
from tests.e2e import hpa_scenarios as H
from tests.e2e.serve_load import OperatorProcess
from tests.nodes import (
    RAY_ENV,
    needs_root,
    new_namespace,
    node_network,
    start_agent,
    start_node_plane,
    stop_agent,
    stop_node_plane,
)

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (RAY_ENV / "bin" / "ray").exists(), reason="no Ray environment"),
    pytest.mark.skipif(not metrics_server.binary_path().exists(), reason="no metrics-server (make deps)"),
]

# The HPA controller's evaluation period on this plane (upstream: 15 s).
HPA_SYNC = "5s"


@pytest.fixture(scope="module")
def hpa_net() -> dict[str, str]:
    return node_network("hpa")


@pytest.fixture(scope="module")
def hpa_plane(hpa_net: dict[str, str]) -> Iterator[ControlPlane]:
    cp = start_node_plane(hpa_net, hpa={"sync-period": HPA_SYNC})
    try:
        rbac.enable(cp)
        yield cp
    finally:
        stop_node_plane(cp)


@pytest.fixture(scope="module")
async def world(hpa_plane: ControlPlane, hpa_net: dict[str, str]) -> AsyncIterator[tuple[ApiClient, str]]:
    """The node agent, metrics-server on it, a namespace and `rayop operator` watching it."""
    state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
    # Ray 2.60 turns token auth on when ~/.ray/auth_token exists, and pods share this host's home.
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    agent, task = await start_agent(hpa_plane, hpa_net, state, cpu="16", memory="32Gi", default_env=env)
    kube = ApiClient(load_kubeconfig(hpa_plane.kubeconfig))
    op: OperatorProcess | None = None
    try:
        await asyncio.to_thread(metrics_server.install, hpa_plane)
        ns = await new_namespace(kube, "hpa")
        log = Path(tempfile.mkdtemp(prefix="rayop-hpa-e2e-")) / "operator.log"
        op = OperatorProcess(hpa_plane.kubeconfig, ns, log)
        op.start()
        yield kube, ns
    finally:
        if op is not None:
            op.stop()
        await kube.close()
        leftovers = await stop_agent(agent, task)
        shutil.rmtree(state, ignore_errors=True)
        assert leftovers == [], f"netns left behind: {leftovers}"


def report(tl: H.Timeline) -> None:
    print(f"\n[hpa e2e] {tl.name}: marks {tl.marks}")
    for t, d in tl.decisions:
        print(f"  {t:7.1f}s HPA: {d}")
    print(f"  load: {tl.load}")
    out = Path(tempfile.gettempdir()) / f"rayop-hpa-{uuid.uuid4().hex[:6]}.json"
    out.write_text(json.dumps(tl.to_json()))
    print(f"  timeline: {out}")


async def test_hpa_scales_a_worker_group_up_under_cpu_load_and_back_down(
    world: tuple[ApiClient, str],
) -> None:
    kube, ns = world
    tl = await H.worker_group_run(kube, ns)
    report(tl)
    # The HPA acted on the CPU it saw, both ways, and the group went to its maximum and back to 1.
    assert tl.max_of("utilization") >= 60, tl.samples
    assert any("above target" in d for _, d in tl.decisions), tl.decisions
    assert any("below target" in d or "All metrics below target" in d for _, d in tl.decisions), tl.decisions
    assert tl.max_of("ready_pods") == H.RWG_MAX and tl.max_of("ray_nodes") == H.RWG_MAX
    last = tl.samples[-1]
    assert (last.spec, last.pods, last.ray_nodes) == (1, 1, 1)
    # Safe scale-down: every worker that went was drained in Ray first.
    drained = [n for _, r, n in tl.notes if r == "DrainingWorker"]
    assert len(drained) >= H.RWG_MAX - 1, tl.notes


async def test_hpa_scales_serve_replicas_while_rays_autoscaler_adds_pods(
    world: tuple[ApiClient, str],
) -> None:
    kube, ns = world
    tl = await H.serve_run(kube, ns)
    report(tl)
    assert tl.max_of("utilization") >= 60, tl.samples
    assert any("above target" in d for _, d in tl.decisions), tl.decisions
    # Serve ran a second replica, on a second worker Pod that Ray's autoscaler added for it.
    assert tl.max_of("ready") == H.SERVE_MAX and tl.max_of("ray_nodes") == H.SERVE_MAX
    order = tl.marks
    assert (
        order["HPA scales up"]
        <= order["Serve starts a replica"]
        <= order[f"{H.SERVE_MAX} replicas on {H.SERVE_MAX} Pods"]
    )
    last = tl.samples[-1]
    assert (last.spec, last.replicas, last.pods, last.ray_nodes) == (1, 1, 1, 1)
    assert tl.failed_requests == 0, tl.load
