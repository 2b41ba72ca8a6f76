"""What the API server reaches on a node agent, as on a real cluster: a webhook behind a Service whose
endpoint is a pod, and the node agent's kubelet API (`kubectl logs`, `kubectl exec`, port-forward over
WebSockets, `/metrics/resource`, authentication and authorization of callers).

No Ray here: the pods are shell commands and rayop's own webhook. The plane and the agent are this
module's (tests/nodes.py); they need root for the pods' network namespaces.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rayop.local.plane import ControlPlane
from rayop.node.agent import NodeAgent
from rayop.runtime.client import (
    PODS,
    SERVICEACCOUNTS,
    SERVICES,
    VALIDATING_WEBHOOKS,
    ApiClient,
    Resource,
    load_kubeconfig,
)
from tests.helpers import eventually
from tests.nodes import (
    needs_root,
    new_namespace,
    node_network,
    start_agent,
    start_node_plane,
    stop_agent,
    stop_node_plane,
)

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
CLUSTERROLES = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False, kind="ClusterRole"
)
CLUSTERROLEBINDINGS = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False, kind="ClusterRoleBinding"
)

pytestmark = needs_root


@pytest.fixture(scope="module")
def net() -> dict[str, str]:
    return node_network("it")


@pytest.fixture(scope="module")
def kplane(net: dict[str, str]) -> Iterator[ControlPlane]:
    cp = start_node_plane(net)
    try:
        yield cp
    finally:
        stop_node_plane(cp)


@pytest.fixture(scope="module")
async def agent(kplane: ControlPlane, net: dict[str, str]) -> AsyncIterator[NodeAgent]:
    state = Path(f"/var/tmp/rayop-it-node-{uuid.uuid4().hex[:8]}")
    a, task = await start_agent(kplane, net, state, cpu="16", memory="16Gi")
    try:
        yield a
    finally:
        await stop_agent(a, task)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def kube(kplane: ControlPlane) -> AsyncIterator[ApiClient]:
    client = ApiClient(load_kubeconfig(kplane.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def ns(agent: NodeAgent, kube: ApiClient) -> str:
    return await new_namespace(kube, "k")


async def kubectl(
    plane: ControlPlane, *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """kubectl in a thread: the node agent serves its kubelet API on this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(plane.bin_dir / "kubectl"), f"--kubeconfig={plane.kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pod(name: str, script: str, restart: str = "Never", **spec: Any) -> Obj:
    c: Obj = {"name": "main", "image": "busybox", "command": ["bash", "-c", script]}
    c.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 2, "containers": [c], **spec},
    }


async def running(kube: ApiClient, ns: str, name: str, timeout: float = 60) -> Obj:
    async def check() -> Obj | None:
        p = await kube.get(PODS, name, ns)
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        return p if statuses and all("running" in s["state"] for s in statuses) else None

    result: Obj = await eventually(check, timeout, 0.2, what=f"pod {name} running")
    return result


# --- a webhook behind a Service --------------------------------------------------------------------

INVALID = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "bad-cluster"},
    "spec": {
        "headGroupSpec": {
            "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}
        },
        "workerGroupSpecs": [
            {
                "groupName": "small",
                "minReplicas": 5,
                "maxReplicas": 3,
                "template": {
                    "spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.60.0"}]}
                },
            }
        ],
    },
}


@pytest.mark.skipif(
    str(REPO).startswith("/tmp/"), reason="containers get a private /tmp: the repo must be elsewhere"
)
async def test_a_webhook_behind_a_service_is_called_at_its_pod(
    kplane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    """rayop's webhook run as a Pod (as its Helm chart runs it) registers itself by Service, not URL; the
    API server reaches it at the pod's IP on the node agent's bridge (aggregator routing)."""
    config = f"rayop-webhook-{ns}"
    await kube.create(
        SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "webhook"}}, ns
    )
    await kube.create(
        CLUSTERROLEBINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": config},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "webhook", "namespace": ns}],
        },
    )
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "rayop-webhook"},
        "spec": {"selector": {"app": "rayop-webhook"}, "ports": [{"port": 443, "targetPort": 9443}]},
    }
    await kube.create(SERVICES, svc, ns)
    args = ["--port=9443", f"--service={ns}/rayop-webhook:443", "--register", f"--config-name={config}"]
    args.append(f"--secret={ns}/rayop-webhook-certs")
    spec = pod(
        "rayop-webhook",
        "",
        restart="Always",
        serviceAccountName="webhook",
        labels={"app": "rayop-webhook"},
        container={
            "command": [sys.executable, "-m", "rayop.cli.main", "webhook", *args],
            "readinessProbe": {"tcpSocket": {"port": 9443}, "periodSeconds": 1},
        },
    )
    await kube.create(PODS, spec, ns)

    async def registered() -> Obj | None:
        return await kube.get_or_none(VALIDATING_WEBHOOKS, config)

    vwc: Obj = await eventually(registered, 90, 0.5, what="webhook registered by its pod")
    for hook in vwc["webhooks"]:
        assert "url" not in hook["clientConfig"]
        assert hook["clientConfig"]["service"]["name"] == "rayop-webhook"

    async def denied() -> str | None:
        out = await kubectl(kplane, "apply", "-n", ns, "-f", "-", input=json.dumps(INVALID))
        assert out.returncode != 0, "the invalid RayCluster was admitted"
        # Until the pod is Ready the API server cannot reach it ("no endpoints available").
        return out.stderr if "must be less than or equal to maxReplicas" in out.stderr else None

    msg = await eventually(denied, 90, 1.0, what="the webhook pod denies the invalid RayCluster")
    assert "spec.workerGroupSpecs[0].minReplicas" in msg
    # The review came through the API server to the pod: its log, read through the kubelet API, says so.
    logs = await kubectl(kplane, "logs", "-n", ns, "rayop-webhook")
    assert logs.returncode == 0, logs.stderr
    assert "rayop webhook serving" in logs.stdout


# --- the kubelet API -------------------------------------------------------------------------------------


async def test_kubectl_logs_with_follow_tail_timestamps_since_and_limit(
    kplane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; echo to-stderr >&2; sleep 1; echo done"
    await kube.create(PODS, pod("counter", script), ns)
    await running(kube, ns, "counter")
    # Follow from the start: it streams while the container runs and ends once it has exited.
    follow = await kubectl(kplane, "logs", "-f", "-n", ns, "counter", timeout=60)
    assert follow.returncode == 0, follow.stderr
    lines = ["line 1", "line 2", "line 3", "line 4", "line 5", "to-stderr", "done"]
    assert follow.stdout.splitlines() == lines

    async def logs(*flags: str) -> str:
        out = await kubectl(kplane, "logs", "-n", ns, "counter", *flags)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert await logs("--tail=2") == "to-stderr\ndone\n"
    assert await logs("--limit-bytes=6") == "line 1"
    stamped = (await logs("--timestamps")).splitlines()
    assert [s.split(" ", 1)[1] for s in stamped] == lines
    stamps = [s.split(" ", 1)[0] for s in stamped]
    assert all(s.endswith("Z") and "T" in s for s in stamps) and stamps == sorted(stamps)
    # sinceTime travels with whole seconds (metav1.Time): lines from that second on are shown.
    cut = stamps[-1].split(".")[0] + "Z"
    after = [ln for ln, st in zip(lines, stamps, strict=True) if st.split(".")[0] + "Z" >= cut]
    assert await logs(f"--since-time={cut}") == "\n".join(after) + "\n"
    assert await logs("--since=1h") == "\n".join(lines) + "\n"


async def test_kubectl_logs_previous_shows_the_run_before(
    kplane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    script = 'n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo "run $n"; [ $n -ge 2 ] && exec sleep 600; exit 1'
    spec = pod(
        "crasher",
        script,
        restart="Always",
        volumes=[{"name": "data", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    )
    first = await kubectl(kplane, "logs", "-n", ns, "nope")
    assert first.returncode != 0 and "not found" in first.stderr
    await kube.create(PODS, spec, ns)

    async def second_run() -> bool:
        p = await kube.get(PODS, "crasher", ns)
        st = ((p.get("status") or {}).get("containerStatuses") or [{}])[0]
        return st.get("restartCount") == 1 and "running" in (st.get("state") or {})

    await eventually(second_run, 60, 0.2, what="the second run")

    async def current() -> bool:
        return (await kubectl(kplane, "logs", "-n", ns, "crasher")).stdout == "run 2\n"

    await eventually(current, 10, what="current run's log")
    prev = await kubectl(kplane, "logs", "-p", "-n", ns, "crasher")
    assert (prev.returncode, prev.stdout) == (0, "run 1\n"), prev.stderr


async def test_kubectl_exec_over_websockets(kplane: ControlPlane, kube: ApiClient, ns: str) -> None:
    await kube.create(PODS, pod("box", "exec sleep 600"), ns)
    await running(kube, ns, "box")
    out = await kubectl(
        kplane, "exec", "-n", ns, "box", "--", "sh", "-c", "echo out $HOSTNAME; echo err >&2; exit 3"
    )
    assert out.returncode == 3
    assert out.stdout == "out box\n"
    assert "err\n" in out.stderr and "command terminated with exit code 3" in out.stderr
    echo = await kubectl(kplane, "exec", "-i", "-n", ns, "box", "--", "cat", input="hello\nworld\n")
    assert (echo.returncode, echo.stdout) == (0, "hello\nworld\n"), echo.stderr
    # kubectl's port-forward tunnels SPDY, which the node agent does not speak: the error says so.
    pf = await kubectl(kplane, "port-forward", "-n", ns, "box", "18080:8080", timeout=30)
    assert pf.returncode != 0 and "WebSockets only" in pf.stderr


async def port_forward_get(plane: ControlPlane, ns: str, name: str, port: int) -> bytes:
    """GET / through the API server's pods/portforward, as a WebSocket client (v4.channel.k8s.io)."""
    cfg = load_kubeconfig(plane.kubeconfig)
    url = f"{cfg.server}/api/v1/namespaces/{ns}/pods/{name}/portforward?ports={port}"
    ctx = cfg.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    got = b""
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, protocols=("v4.channel.k8s.io",), ssl=ctx) as ws,
    ):
        assert ws.protocol == "v4.channel.k8s.io"
        opened = [await ws.receive_bytes(timeout=10) for _ in range(2)]
        assert opened == [bytes([0]) + struct.pack("<H", port), bytes([1]) + struct.pack("<H", port)]
        await ws.send_bytes(b"\x00GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            if msg.data[0] == 1 and len(msg.data) > 1:
                raise AssertionError(f"port-forward error: {msg.data[1:].decode(errors='replace')}")
            got += msg.data[1:]
    return got


async def test_port_forward_over_websockets_reaches_localhost_in_the_pod(
    kplane: ControlPlane, kube: ApiClient, ns: str
) -> None:
    # Bound to the pod's loopback only: reachable through the pod's network namespace, not its IP.
    await kube.create(PODS, pod("web", "cd /etc && exec python3 -m http.server --bind 127.0.0.1 8080"), ns)
    await running(kube, ns, "web")
    body = await eventually(
        lambda: port_forward_get(kplane, ns, "web", 8080), 30, 0.5, what="port-forward GET"
    )
    assert body.startswith(b"HTTP/1.0 200") and b"hosts" in body


async def test_metrics_resource_through_the_node_proxy(
    kplane: ControlPlane, kube: ApiClient, agent: NodeAgent, ns: str
) -> None:
    await kube.create(PODS, pod("spin", "for i in $(seq 1 200000); do :; done; exec sleep 600"), ns)
    await running(kube, ns, "spin")

    async def sample() -> dict[str, float] | None:
        out = await kubectl(kplane, "get", "--raw", f"/api/v1/nodes/{agent.cfg.name}/proxy/metrics/resource")
        assert out.returncode == 0, out.stderr
        found = {}
        for fam in text_string_to_metric_families(out.stdout):
            for s in fam.samples:
                if (s.labels.get("pod") == "spin" and s.labels.get("namespace") == ns) or fam.name.startswith(
                    "node_"
                ):
                    found[s.name] = s.value
        return found if found.get("container_cpu_usage_seconds_total", 0) > 0.1 else None

    got = await eventually(sample, 60, 1.0, what="the spinning container's CPU time")
    assert got["container_memory_working_set_bytes"] > 0
    assert got["container_start_time_seconds"] > 0
    assert got["node_cpu_usage_seconds_total"] > 0 and got["node_memory_working_set_bytes"] > 0


async def test_kubelet_api_authenticates_and_authorizes_callers(
    kplane: ControlPlane, kube: ApiClient, agent: NodeAgent, ns: str
) -> None:
    """Tokens are checked with a TokenReview and callers authorized on nodes/<subresource>: a service
    account with nodes/metrics reads /metrics/resource, one without gets 403, no credentials 401."""
    rbac = "rbac.authorization.k8s.io"
    for name in ("reader", "nobody"):
        await kube.create(
            SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}, ns
        )
    await kube.create(
        CLUSTERROLES,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"metrics-{ns}"},
            "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}],
        },
    )
    await kube.create(
        CLUSTERROLEBINDINGS,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"metrics-{ns}"},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": f"metrics-{ns}"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )

    async def token(sa: str) -> str:
        res = await kube.request("POST", SERVICEACCOUNTS.path(ns, sa, "token"), body={"spec": {}})
        return str(res["status"]["token"])

    assert kplane.pki
    ctx = ssl.create_default_context(cafile=str(kplane.pki.serving_ca))  # the kubelet's certificate verifies
    url = f"https://{agent.network.gateway}:{agent.cfg.kubelet_port}/metrics/resource"

    async def get(headers: dict[str, str]) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(url, headers=headers, ssl=ctx) as r:
            return r.status, await r.text()

    assert (await get({}))[0] == 401
    status, text = await get({"Authorization": f"Bearer {await token('nobody')}"})
    assert status == 403 and f"user=system:serviceaccount:{ns}:nobody" in text and "metrics" in text
    status, text = await get({"Authorization": f"Bearer {await token('reader')}"})
    assert status == 200 and "node_cpu_usage_seconds_total" in text
    bad = base64.b64encode(b"not a token").decode()
    assert (await get({"Authorization": f"Bearer {bad}"}))[0] == 401
