"""The RayService controller against a real kube-apiserver + kube-controller-manager, with the RayCluster
controller alongside and a fake fleet of Ray dashboards and pods (real Ray Serve is in tests/e2e).

What is real: the API server, the CRDs, kube-controller-manager's EndpointSlice and garbage-collector
controllers, both rayop controllers. What is not: pods run nowhere (a stand-in kubelet makes them Running
and Ready), and Ray's dashboards and Serve proxies are fakes that answer like Ray 2.60.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES
from rayop.runtime.client import ENDPOINTSLICES, PODS, SERVICES, ApiClient
from tests.fake_dashboard import FakeFleet
from tests.helpers import eventually
from tests.integration.rayservices import (
    clusters_of,
    condition,
    events,
    get_rs,
    names,
    operator,
    rayservice,
    serving_kubelet,
)

T = 60.0


@pytest.fixture
async def fleet() -> AsyncIterator[FakeFleet]:
    f = await FakeFleet(deploy_seconds=0.3).start()
    yield f
    await f.stop()


async def wait_ready(kube: ApiClient, ns: str, name: str, t: float = T) -> dict[str, Any]:
    async def ok() -> dict[str, Any] | None:
        rs = await get_rs(kube, ns, name)
        st = rs.get("status") or {}
        if condition(rs, "Ready").get("status") == "True" and not names(rs)[1]:
            return rs
        del st
        return None

    try:
        res: dict[str, Any] = await eventually(ok, t, 0.2, what=f"{name} Ready with no pending cluster")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{await describe(kube, ns, name)}") from None
    return res


async def describe(kube: ApiClient, ns: str, name: str) -> str:
    """What a failed wait shows: the status, the events, the clusters."""
    import json

    rs = await kube.get_or_none(RAYSERVICES, name, ns)
    return (
        f"status: {json.dumps((rs or {}).get('status'), indent=1)[:4000]}\n"
        f"events: {await events(kube, ns, name)}\nclusters: {await clusters_of(kube, ns, name)}\n"
        f"pods: {[(q['metadata']['labels'], (q.get('status') or {}).get('podIP'), (q.get('spec') or {}).get('nodeName')) for q in (await kube.list(PODS, ns))['items']]}\n"
        f"svc: {(await kube.get(SERVICES, 'rs1-serve-svc', ns))['spec']}\n"
        f"slices: {[(s['metadata'].get('labels'), s.get('endpoints')) for s in (await kube.list(ENDPOINTSLICES, ns))['items']]}"
    )


async def test_first_cluster_promoted_and_services_created(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        await kube.create(RAYSERVICES, rayservice("rs1", ns))
        rs = await wait_ready(kube, ns, "rs1")
        active, pending = names(rs)
        assert active.startswith("rs1-") and len(active) == len("rs1-") + 5 and pending == ""
        st = rs["status"]
        assert st["serviceStatus"] == "Running"
        assert st["numServeEndpoints"] >= 1
        assert st["activeServiceStatus"]["applicationStatuses"]["hello"]["status"] == "RUNNING"
        assert st["observedGeneration"] == rs["metadata"]["generation"]
        assert condition(rs, "UpgradeInProgress")["reason"] == "NoPendingCluster"
        assert "ray.io/rayservice-finalizer" in rs["metadata"]["finalizers"]
        serve = await kube.get(SERVICES, "rs1-serve-svc", ns)
        assert serve["spec"]["selector"] == {"ray.io/cluster": active, "ray.io/serve": "true"}
        assert serve["spec"]["clusterIP"] not in ("", "None")
        head = await kube.get(SERVICES, "rs1-head-svc", ns)
        assert head["spec"]["selector"]["ray.io/cluster"] == active
        rc = await kube.get(RAYCLUSTERS, active, ns)
        ann = rc["metadata"]["annotations"]
        assert ann["ray.io/kuberay-version"] == "v1.7.0"
        assert ann["rayop.io/serve-config-hash"]
        assert fleet.puts(active) == 1
        heads = (await kube.list(PODS, ns, label_selector=f"ray.io/cluster={active},ray.io/node-type=head"))[
            "items"
        ]
        assert heads[0]["metadata"]["labels"]["ray.io/serve"] == "true"
        reasons = [r for r, _ in await events(kube, ns, "rs1")]
        for r in (
            "CreatedRayCluster",
            "UpdatedServeApplications",
            "CreatedService",
            "UpdatedHeadPodServeLabel",
        ):
            assert r in reasons, reasons
