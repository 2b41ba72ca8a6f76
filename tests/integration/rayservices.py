"""Helpers for RayService integration tests: manifests, an in-process operator (RayCluster + RayService
controllers) talking to a fake fleet of Ray dashboards and pods, and a stand-in kubelet.

The plane has no kubelet: `serving_kubelet` makes Ray pods Running and Ready with an IP of their own, so
kube-controller-manager's EndpointSlice controller fills the serve Service's slices as it would on a real
cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES
from rayop.base.times import format_time
from rayop.controllers import raycluster as rcmod
from rayop.controllers import raycluster_metrics, rayservice_metrics
from rayop.controllers import rayservice as rsmod
from rayop.controllers import rayservice_machine as M
from rayop.controllers import rayworkergroup as rwgmod
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.client import NODES, PODS, ApiClient, ApiError
from rayop.runtime.manager import Manager
from tests import rbac
from tests.fake_dashboard import FleetResolver
from tests.integration.rayclusters import IMAGE, running_ready_status, set_pod_status, stand_in_node_status

SERVE_V1 = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
"""


def cluster_config(*, image: str = IMAGE, ray_version: str = "2.60.0", workers: int = 1) -> dict[str, Any]:
    return {
        "rayVersion": ray_version,
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": image,
                            "ports": [
                                {"name": "gcs-server", "containerPort": 6379},
                                {"name": "dashboard", "containerPort": 8265},
                                {"name": "client", "containerPort": 10001},
                                {"name": "serve", "containerPort": 8000},
                            ],
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ]
                }
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": workers,
                "minReplicas": 0,
                "maxReplicas": 5,
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-worker",
                                "image": image,
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    }
                },
            }
        ],
    }


def rayservice(
    name: str, namespace: str, *, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "serveConfigV2": SERVE_V1,
        "rayClusterConfig": cluster_config(),
        "rayClusterDeletionDelaySeconds": 2,
    }
    s.update(spec)
    md: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": C.API_VERSION, "kind": C.KIND_RAYSERVICE, "metadata": md, "spec": s}


async def get_rs(kube: ApiClient, ns: str, name: str) -> dict[str, Any]:
    return await kube.get(RAYSERVICES, name, ns)


def names(rs: dict[str, Any]) -> tuple[str, str]:
    return M.cluster_names(rs)


def condition(rs: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in (rs.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


async def clusters_of(kube: ApiClient, ns: str, rs: str) -> list[str]:
    sel = f"{C.LABEL_ORIGINATED_FROM_CR_NAME}={rs},{C.LABEL_ORIGINATED_FROM_CRD}={C.KIND_RAYSERVICE}"
    items = (await kube.list(RAYCLUSTERS, ns, label_selector=sel))["items"]
    return sorted(i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp"))


@contextlib.asynccontextmanager
async def operator(
    client: ApiClient,
    namespace: str,
    fleet: FleetResolver,
    *,
    environ: dict[str, str] | None = None,
    config: M.RayServiceConfig | None = None,
    signed_in: bool = False,
    worker_groups: bool = False,
) -> AsyncIterator[Manager]:
    """RayCluster + RayService controllers in this process, watching one namespace, Ray faked by `fleet`;
    with `worker_groups`, the RayWorkerGroup controller too.

    The operator runs as itself, under the chart's ClusterRole (tests/rbac.py), so a permission the chart
    lacks fails the test and what the operator uses is audited. `signed_in`: `client` already is the
    operator's (a process of its own, given `rbac.operator_kubeconfig`), so it is used as it is."""
    own = None if signed_in else rbac.operator_client(client)
    client = own or client
    mgr = Manager(
        client,
        leader_election=False,
        namespaces=[namespace],
        metrics_addr=None,
        probe_addr=None,
        handle_signals=False,
        concurrency=4,
    )
    env = {C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS: "10", **(environ or {})}
    settings = ControllerSettings.from_env(env)
    machine = config or replace(settings.rayservice.machine, requeue_seconds=0.5)
    settings = replace(
        settings,
        rayservice=replace(
            settings.rayservice,
            machine=machine,
            dashboard_resolver=fleet.resolve_dashboard,
            pod_resolver=fleet.resolve_pod,
        ),
        reconcile_concurrency=4,
        enable_metrics=True,
    )
    rcmod.setup(mgr, settings)
    rsmod.setup(mgr, settings)
    if worker_groups:
        rwgmod.setup(mgr, settings)
    task = asyncio.create_task(mgr.run())
    try:
        yield mgr
    finally:
        mgr.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            if own is not None:
                await own.close()
            raycluster_metrics.unregister(mgr.informer(RAYCLUSTERS))
            rayservice_metrics.unregister(mgr.informer(RAYSERVICES))


def reconciler_of(mgr: Manager) -> rsmod.RayServiceReconciler:
    for c in mgr.controllers:
        if c.name == "rayservice":
            r: rsmod.RayServiceReconciler = c.reconcile.__self__  # type: ignore[attr-defined]
            return r
    raise AssertionError("no rayservice controller")


_ips = itertools.count(1)
FAKE_NODE = "rayservice-fake-node"


async def heartbeat(kube: ApiClient) -> None:
    """A Node that reports Ready: the EndpointSlice controller leaves out pods of unknown nodes, and the node
    lifecycle controller evicts pods from a node that stops reporting."""
    node = await kube.get_or_none(NODES, FAKE_NODE)
    if node is None:
        with contextlib.suppress(ApiError):
            node = await kube.create(
                NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": FAKE_NODE}}
            )
    if node is None:
        return
    now = format_time(time.time())
    node["status"] = stand_in_node_status(now)
    with contextlib.suppress(ApiError):
        await kube.replace_status(NODES, node)


@contextlib.asynccontextmanager
async def serving_kubelet(kube: ApiClient, namespace: str, interval: float = 0.2) -> AsyncIterator[None]:
    """Bind every new Ray pod to a Ready stand-in Node and make it Running and Ready with an IP of its own."""

    async def loop() -> None:
        beat = 0.0
        while True:
            with contextlib.suppress(ApiError):
                if time.monotonic() - beat > 5:
                    await heartbeat(kube)
                    beat = time.monotonic()
                items = (await kube.list(PODS, namespace, label_selector=C.LABEL_CLUSTER))["items"]
                for p in items:
                    md = p["metadata"]
                    if md.get("deletionTimestamp") or (p.get("status") or {}).get("phase") == "Running":
                        continue
                    if not (p.get("spec") or {}).get("nodeName"):
                        binding = {
                            "apiVersion": "v1",
                            "kind": "Binding",
                            "metadata": {"name": md["name"], "namespace": namespace, "uid": md["uid"]},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": FAKE_NODE},
                        }
                        await kube.request("POST", PODS.path(namespace, md["name"], "binding"), body=binding)
                        p = await kube.get(PODS, md["name"], namespace)
                    n = next(_ips)
                    await set_pod_status(
                        kube, copy.deepcopy(p), running_ready_status(p, f"10.2.{n // 250}.{n % 250 + 1}")
                    )
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
