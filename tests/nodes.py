"""Node agents for tests: a free pod network, a plane that pods can use, and an in-process agent whose
kubelet API the plane can reach and verify.

The plane here is a module's own: pods need the ServiceAccount admission plugin (token volumes) and the
bridge gateway in the API server's certificate, which the session `plane` fixture does not enable.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from rayop.local.pki import issue_serving_cert
from rayop.local.plane import ControlPlane, PlaneOptions
from rayop.node.agent import NodeAgent, NodeConfig
from rayop.runtime.client import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS, ApiClient, load_kubeconfig
from tests import rbac
from tests.helpers import eventually

RAY_ENV = Path(os.environ.get("RAYOP_RAY_ENV") or Path.home() / ".cache/rayop/ray/2.60.0")

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2")


def free_subnet() -> int:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    # Start at a per-process offset so test processes starting together do not pick the same /24.
    start = os.getpid() % 120
    for i in range(120):
        x = 120 + (start + i) % 120
        if f"10.213.{x}." not in routes:
            return x
    raise RuntimeError("no free 10.213.x.0/24")


def node_network(prefix: str = "e2e") -> dict[str, str]:
    x = free_subnet()
    tag = f"{os.getpid() % 100000}"
    return {
        "cidr": f"10.213.{x}.0/24",
        "gateway": f"10.213.{x}.1",
        "bridge": f"rt{tag}",
        "name": f"{prefix}-{tag}",
    }


def start_node_plane(net: dict[str, str], **kw: Any) -> ControlPlane:
    state = Path(tempfile.mkdtemp(prefix="rayop-nodeplane-"))
    # Audited: the operator's calls count towards the least-privilege check (tests/rbac.py).
    cp = ControlPlane(
        rbac.audited(
            PlaneOptions(state_dir=state, extra_ips=[net["gateway"]], service_account_admission=True, **kw)
        )
    )
    try:
        cp.start()
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    return cp


def stop_node_plane(cp: ControlPlane) -> None:
    rbac.collect(cp)
    cp.stop()
    shutil.rmtree(cp.state_dir, ignore_errors=True)


def cleanup_names(prefix: str, bridge: str) -> None:
    netns = Path("/run/netns")
    if netns.is_dir():
        for p in netns.iterdir():
            if p.name.startswith(f"{prefix}-"):
                subprocess.run(["ip", "netns", "del", p.name], check=False)
    subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def kubelet_tls(plane: ControlPlane, net: dict[str, str]) -> dict[str, Path]:
    """NodeConfig fields for a kubelet API the plane verifies (`--kubelet-certificate-authority`)."""
    assert plane.pki
    crt, key = issue_serving_cert(plane.pki, f"kubelet-{net['name']}", [net["gateway"], net["name"]])
    return {"tls_cert_file": crt, "tls_key_file": key, "client_ca_file": plane.pki.client_ca}


async def start_agent(
    plane: ControlPlane, net: dict[str, str], state: Path, **kw: Any
) -> tuple[NodeAgent, asyncio.Task[None]]:
    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    cfg = NodeConfig(
        name=net["name"],
        state_dir=state,
        bridge=net["bridge"],
        pod_cidr=net["cidr"],
        python_env=RAY_ENV,
        backoff_initial=1.0,
        stop_grace=5.0,
        **{**kubelet_tls(plane, net), **kw},
    )
    agent = NodeAgent(cfg, client=client)
    task = asyncio.get_running_loop().create_task(agent.run())
    await eventually(lambda: agent.ready.is_set() or task.done(), 60, what="node agent ready")
    if task.done():
        task.result()
    return agent, task


async def stop_agent(agent: NodeAgent, task: asyncio.Task[None]) -> list[str]:
    """Stop, then remove by name whatever is left (and say what was left)."""
    agent.stop()
    await asyncio.wait_for(task, 120)
    leftovers = agent.network.own_netns() if agent.cfg.cleanup_on_stop else []
    if agent.cfg.cleanup_on_stop:
        cleanup_names(agent.network.prefix, agent.cfg.bridge)
    await agent.client.close()
    return leftovers


async def new_namespace(kube: ApiClient, prefix: str = "n") -> str:
    """A fresh namespace whose pods can start: its default ServiceAccount (admission) and CA ConfigMap
    (token volume) exist."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await eventually(lambda: kube.get(SERVICEACCOUNTS, "default", name), 30, what="default SA")
    await eventually(lambda: kube.get(CONFIGMAPS, "kube-root-ca.crt", name), 30, what="kube-root-ca.crt")
    return name
