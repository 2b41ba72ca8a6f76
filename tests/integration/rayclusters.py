"""Helpers for RayCluster integration tests: manifests, an in-process operator, and a stand-in kubelet.

The plane has no kubelet (nor scheduler): like KubeRay's envtest suite, tests make Pods Running and Ready
themselves through the status subresource.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.controllers import raycluster as rcmod
from rayop.controllers import raycluster_metrics
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.client import PODS, ApiClient, ApiError
from rayop.runtime.manager import Manager
from tests import rbac

IMAGE = "rayproject/ray:2.60.0"


def raycluster(name: str, namespace: str, *, replicas: int = 2, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "rayVersion": "2.60.0",
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": IMAGE,
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ]
                }
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": replicas,
                "minReplicas": 0,
                "maxReplicas": 200,
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-worker",
                                "image": IMAGE,
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    }
                },
            }
        ],
    }
    s.update(spec)
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "metadata": {"name": name, "namespace": namespace},
        "spec": s,
    }


async def pods_of(
    kube: ApiClient, namespace: str, cluster: str, node_type: str | None = None
) -> list[dict[str, Any]]:
    sel = f"{C.LABEL_CLUSTER}={cluster}"
    if node_type:
        sel += f",{C.LABEL_NODE_TYPE}={node_type}"
    items: list[dict[str, Any]] = (await kube.list(PODS, namespace, label_selector=sel))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def stand_in_node_status(now: str) -> dict[str, Any]:
    """A Node's status as a kubelet on loopback would report it at `now`: Ready, one internal address."""
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "stand-in kubelet",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    return {"conditions": [ready], "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}


def running_ready_status(pod: dict[str, Any], ip: str = "10.1.0.1") -> dict[str, Any]:
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", IMAGE),
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
            for c in containers
        ],
    }


async def set_pod_status(kube: ApiClient, pod: dict[str, Any], status: dict[str, Any]) -> None:
    body = copy.deepcopy(pod)
    body["status"] = status
    with contextlib.suppress(ApiError):  # gone or changed meanwhile: the caller polls again
        await kube.replace_status(PODS, body)


async def mark_ready(kube: ApiClient, namespace: str, cluster: str | None = None) -> int:
    """Make every not-yet-ready Ray Pod Running+Ready; returns how many were changed."""
    sel = f"{C.LABEL_CLUSTER}={cluster}" if cluster else C.LABEL_CLUSTER
    items = (await kube.list(PODS, namespace, label_selector=sel))["items"]
    todo = [
        p
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and (p.get("status") or {}).get("phase") != "Running"
        and p["metadata"]["labels"].get(C.LABEL_NODE_TYPE) in ("head", "worker")
    ]
    for i, p in enumerate(todo):
        await set_pod_status(kube, p, running_ready_status(p, f"10.1.{i // 250}.{i % 250 + 1}"))
    return len(todo)


@contextlib.asynccontextmanager
async def fake_kubelet(kube: ApiClient, namespace: str, interval: float = 0.2) -> AsyncIterator[None]:
    """Keep marking new Ray Pods Running+Ready in the background."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(ApiError):
                await mark_ready(kube, namespace)
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def operator(
    client: ApiClient,
    namespace: str,
    *,
    environ: dict[str, str] | None = None,
    gates: dict[str, bool] | None = None,
    **knobs: Any,
) -> AsyncIterator[Manager]:
    """The RayCluster controller running in this process on a runtime Manager, watching one namespace."""
    # The operator runs as itself, under the chart's ClusterRole (tests/rbac.py).
    client = rbac.operator_client(client)
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
    settings = ControllerSettings.from_env(env, gates)
    concurrency = knobs.pop("reconcile_concurrency", 4)
    settings = replace(
        settings,
        raycluster=replace(settings.raycluster, **knobs),
        reconcile_concurrency=concurrency,
        enable_metrics=True,
    )
    rcmod.setup(mgr, settings)
    task = asyncio.create_task(mgr.run())
    try:
        yield mgr
    finally:
        mgr.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await client.close()
            raycluster_metrics.unregister(mgr.informer(RAYCLUSTERS))


def condition(rc: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (rc.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None
