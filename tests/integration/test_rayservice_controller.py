"""The RayService controller against a real kube-apiserver + kube-controller-manager, with the RayCluster
controller alongside and a fake fleet of Ray dashboards and pods (real Ray Serve is in tests/e2e).

What is real: the API server, the CRDs, kube-controller-manager's EndpointSlice and garbage-collector
controllers, both rayop controllers. What is not: pods run nowhere (a stand-in kubelet makes them Running
and Ready), and Ray's dashboards and Serve proxies are fakes that answer like Ray 2.60.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES
from rayop.base.times import parse_time
from rayop.runtime.client import ENDPOINTSLICES, PODS, SERVICES, ApiClient
from tests.fake_dashboard import FakeFleet
from tests.helpers import eventually
from tests.integration.events import events_of, wait_event, wait_reasons
from tests.integration.rayservices import (
    clusters_of,
    condition,
    get_rs,
    names,
    operator,
    rayservice,
    reconciler_of,
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
        f"events: {await events_of(kube, ns, name)}\nclusters: {await clusters_of(kube, ns, name)}\n"
        f"pods: {[(q['metadata']['labels'], (q.get('status') or {}).get('podIP'), (q.get('spec') or {}).get('nodeName')) for q in (await kube.list(PODS, ns))['items']]}\n"
        f"svc: {((await kube.get_or_none(SERVICES, name + '-serve-svc', ns)) or {}).get('spec')}\n"
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
        await wait_reasons(
            kube,
            ns,
            "rs1",
            "CreatedRayCluster",
            "UpdatedServeApplications",
            "CreatedService",
            "UpdatedHeadPodServeLabel",
        )


async def wait_rs(kube: ApiClient, ns: str, name: str, pred: Any, what: str, t: float = T) -> dict[str, Any]:
    async def ok() -> dict[str, Any] | None:
        rs = await get_rs(kube, ns, name)
        return rs if pred(rs) else None

    try:
        res: dict[str, Any] = await eventually(ok, t, 0.2, what=f"{name}: {what}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{await describe(kube, ns, name)}") from None
    return res


async def patch_spec(kube: ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    await kube.patch(RAYSERVICES, name, {"spec": spec}, ns, patch_type="merge")


def metric(metric_name: str, **labels: str) -> float | None:
    from prometheus_client import REGISTRY

    value: float | None = REGISTRY.get_sample_value(metric_name, labels)
    return value


async def test_serve_config_change_is_applied_in_place(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        await kube.create(RAYSERVICES, rayservice("rs2", ns))
        rs = await wait_ready(kube, ns, "rs2")
        active = names(rs)[0]
        uid = rs["metadata"]["uid"]
        assert metric("kuberay_service_info", name="rs2", namespace=ns, uid=uid) == 1
        assert (
            metric("kuberay_service_condition_ready", name="rs2", namespace=ns, uid=uid, condition="true")
            == 1
        )
        new = SERVE_V1_PLUS_APP
        await patch_spec(kube, ns, "rs2", {"serveConfigV2": new})
        rs = await wait_rs(
            kube,
            ns,
            "rs2",
            lambda r: (
                "other" in ((r["status"].get("activeServiceStatus") or {}).get("applicationStatuses") or {})
            ),
            "the new application listed",
        )
        assert names(rs) == (active, "")
        assert await clusters_of(kube, ns, "rs2") == [active]
        assert fleet.puts(active) == 2
        assert [a["name"] for a in fleet.cluster(active).config["applications"]] == ["hello", "other"]  # type: ignore[index]
        await wait_event(kube, ns, "rs2", "UpdatedServeApplications")


SERVE_V1_PLUS_APP = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
  - name: other
    route_prefix: /other
    import_path: hello:build
"""


async def test_worker_group_appended_in_place(kube: ApiClient, namespace: str, fleet: FakeFleet) -> None:
    ns = namespace
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        body = rayservice("rs3", ns)
        await kube.create(RAYSERVICES, body)
        rs = await wait_ready(kube, ns, "rs3")
        active = names(rs)[0]
        cfg = body["spec"]["rayClusterConfig"]
        extra = {**cfg["workerGroupSpecs"][0], "groupName": "more"}
        await patch_spec(
            kube,
            ns,
            "rs3",
            {"rayClusterConfig": {**cfg, "workerGroupSpecs": [*cfg["workerGroupSpecs"], extra]}},
        )

        async def two_groups() -> bool:
            rc = await kube.get(RAYCLUSTERS, active, ns)
            return [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["workers", "more"]

        await eventually(two_groups, T, 0.2, what="the group appended to the same cluster")
        rc = await kube.get(RAYCLUSTERS, active, ns)
        assert rc["metadata"]["annotations"]["ray.io/num-worker-groups"] == "2"
        assert rc["metadata"]["annotations"]["rayop.io/serve-config-hash"]  # kept across the update
        assert names(await get_rs(kube, ns, "rs3")) == (active, "")
        assert await clusters_of(kube, ns, "rs3") == [active]
        assert fleet.puts(active) == 1
        await wait_event(kube, ns, "rs3", "UpdatedRayCluster")


async def test_ray_version_change_upgrades_and_second_change_replaces_the_pending_cluster(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        body = rayservice("rs4", ns)
        await kube.create(RAYSERVICES, body)
        rs = await wait_ready(kube, ns, "rs4")
        first = names(rs)[0]
        fleet.deploy_seconds = None  # new clusters' applications stay DEPLOYING until told
        cfg = body["spec"]["rayClusterConfig"]
        await patch_spec(kube, ns, "rs4", {"rayClusterConfig": {**cfg, "rayVersion": "2.60.1"}})
        rs = await wait_rs(kube, ns, "rs4", lambda r: bool(names(r)[1]), "a pending cluster")
        p1 = names(rs)[1]
        assert names(rs)[0] == first and p1 != first
        rs = await wait_rs(
            kube, ns, "rs4", lambda r: condition(r, "UpgradeInProgress").get("status") == "True", "upgrading"
        )
        assert condition(rs, "UpgradeInProgress")["reason"] == "BothActivePendingClustersExist"
        await eventually(lambda: fleet.puts(p1) == 1, T, 0.2, what="config PUT to the pending cluster")

        await patch_spec(kube, ns, "rs4", {"rayClusterConfig": {**cfg, "rayVersion": "2.60.2"}})
        rs = await wait_rs(kube, ns, "rs4", lambda r: names(r)[1] not in ("", p1), "a fresh pending cluster")
        p2 = names(rs)[1]
        assert names(rs)[0] == first
        # The replaced pending cluster goes after the 2 s delay (its proxies are idle).
        await eventually(
            lambda: _gone(kube, ns, p1), T, 0.2, what=f"the replaced pending cluster {p1} deleted"
        )
        assert (await get_rs(kube, ns, "rs4"))["status"]["activeServiceStatus"]["rayClusterName"] == first

        await eventually(lambda: fleet.puts(p2) == 1, T, 0.2, what="config PUT to the new pending cluster")
        fleet.cluster(p2).set_status("RUNNING")
        rs = await wait_rs(kube, ns, "rs4", lambda r: names(r) == (p2, ""), "the new cluster promoted")
        serve = await kube.get(SERVICES, "rs4-serve-svc", ns)
        assert serve["spec"]["selector"]["ray.io/cluster"] == p2
        await eventually(lambda: _gone(kube, ns, first), T, 0.2, what=f"the old cluster {first} deleted")
        assert await clusters_of(kube, ns, "rs4") == [p2]
        await wait_reasons(kube, ns, "rs4", "CreatedRayCluster", "DeletedRayCluster", "UpdatedService")


async def _gone(kube: ApiClient, ns: str, name: str) -> bool:
    return await kube.get_or_none(RAYCLUSTERS, name, ns) is None


async def test_old_cluster_deleted_after_the_delay_once_drained(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        body = rayservice(
            "rs5", ns, annotations={"rayop.io/serve-drain-timeout": "120s"}, rayClusterDeletionDelaySeconds=3
        )
        await kube.create(RAYSERVICES, body)
        first = names(await wait_ready(kube, ns, "rs5"))[0]
        old_pods = [
            p["metadata"]["name"]
            for p in (await kube.list(PODS, ns, label_selector=f"ray.io/cluster={first}"))["items"]
        ]
        for p in old_pods:
            fleet.pod(p).ongoing = 2  # requests still in flight at the old proxies
        cfg = body["spec"]["rayClusterConfig"]
        await patch_spec(kube, ns, "rs5", {"rayClusterConfig": {**cfg, "rayVersion": "2.60.1"}})
        rs = await wait_rs(kube, ns, "rs5", lambda r: names(r)[0] not in ("", first), "promoted", t=T)
        switched = time.monotonic()
        rc = await eventually(
            lambda: _annotated(kube, ns, first), T, 0.2, what="the old cluster's deletion time recorded on it"
        )
        due = parse_time(rc["metadata"]["annotations"]["rayop.io/delete-after"])
        assert due is not None
        # Past the delay the cluster stays while its proxies report requests in flight.
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 3)
        assert not await _gone(kube, ns, first)
        assert (await kube.get(RAYCLUSTERS, first, ns))["metadata"]["annotations"][
            "rayop.io/delete-after"
        ] == rc["metadata"]["annotations"]["rayop.io/delete-after"]
        for p in old_pods:
            fleet.pod(p).ongoing = 0
        await eventually(lambda: _gone(kube, ns, first), T, 0.2, what="the drained cluster deleted")
        print(f"\nold cluster deleted {time.monotonic() - switched:.1f}s after the switch (delay 3s + drain)")
        assert names(rs)[0] in await clusters_of(kube, ns, "rs5")


async def _annotated(kube: ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    rc = await kube.get(RAYCLUSTERS, name, ns)
    return rc if "rayop.io/delete-after" in (rc["metadata"].get("annotations") or {}) else None


async def test_initializing_timeout(kube: ApiClient, namespace: str, fleet: FakeFleet) -> None:
    ns = namespace
    fleet.deploy_seconds = None  # never RUNNING
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        await kube.create(
            RAYSERVICES, rayservice("rs6", ns, annotations={"ray.io/initializing-timeout": "4s"})
        )
        rs = await wait_rs(
            kube,
            ns,
            "rs6",
            lambda r: condition(r, "Ready").get("reason") == "InitializingTimeout",
            "timed out",
        )
        assert names(rs) == ("", "")
        assert "configured timeout of 4s" in condition(rs, "Ready")["message"]
        await wait_event(kube, ns, "rs6", "RayServiceInitializingTimeout")
        await eventually(
            lambda: _none_left(kube, ns, "rs6"), T, 0.2, what="the cluster deleted after the delay"
        )
        # Terminal: an edit starts nothing.
        await patch_spec(kube, ns, "rs6", {"serveConfigV2": SERVE_V1_PLUS_APP})
        await asyncio.sleep(2)
        assert await clusters_of(kube, ns, "rs6") == []
        assert condition(await get_rs(kube, ns, "rs6"), "Ready")["reason"] == "InitializingTimeout"


async def _none_left(kube: ApiClient, ns: str, rs: str) -> bool:
    return await clusters_of(kube, ns, rs) == []


async def test_suspend_and_resume(kube: ApiClient, namespace: str, fleet: FakeFleet) -> None:
    ns = namespace
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        await kube.create(RAYSERVICES, rayservice("rs7", ns))
        first = names(await wait_ready(kube, ns, "rs7"))[0]
        await patch_spec(kube, ns, "rs7", {"suspend": True})
        rs = await wait_rs(
            kube, ns, "rs7", lambda r: condition(r, "Suspended").get("status") == "True", "suspended"
        )
        assert condition(rs, "Ready")["reason"] == "SuspendComplete"
        assert condition(rs, "Suspending")["status"] == "False"
        assert await clusters_of(kube, ns, "rs7") == []
        assert await kube.get_or_none(SERVICES, "rs7-serve-svc", ns) is None
        assert await kube.get_or_none(SERVICES, "rs7-head-svc", ns) is None
        await patch_spec(kube, ns, "rs7", {"suspend": False})
        rs = await wait_ready(kube, ns, "rs7")
        assert names(rs)[0] not in ("", first)
        assert condition(rs, "Suspended")["status"] == "False"


async def test_operator_restart_mid_upgrade_changes_nothing_decided(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    body = rayservice("rs8", ns, rayClusterDeletionDelaySeconds=600)
    cfg = body["spec"]["rayClusterConfig"]
    async with operator(kube, ns, fleet), serving_kubelet(kube, ns):
        await kube.create(RAYSERVICES, body)
        first = names(await wait_ready(kube, ns, "rs8"))[0]
        fleet.deploy_seconds = None
        await patch_spec(kube, ns, "rs8", {"rayClusterConfig": {**cfg, "rayVersion": "2.60.1"}})
        p1 = names(await wait_rs(kube, ns, "rs8", lambda r: bool(names(r)[1]), "pending"))[1]
        # Once p1 exists with 2.60.1 (a spec change before that would simply create p1 from the newer spec).
        await eventually(lambda: fleet.puts(p1) == 1, T, 0.2, what="config PUT to the first pending cluster")
        await patch_spec(kube, ns, "rs8", {"rayClusterConfig": {**cfg, "rayVersion": "2.60.2"}})
        p2 = names(await wait_rs(kube, ns, "rs8", lambda r: names(r)[1] not in ("", p1), "second pending"))[1]
        await eventually(lambda: fleet.puts(p2) == 1, T, 0.2, what="config PUT to the pending cluster")
        p1_obj = await eventually(lambda: _annotated(kube, ns, p1), T, 0.2, what="p1's deletion time")
        deadline = p1_obj["metadata"]["annotations"]["rayop.io/delete-after"]
        puts = {c: fleet.puts(c) for c in (first, p1, p2)}
    before = await get_rs(kube, ns, "rs8")
    async with operator(kube, ns, fleet) as mgr, serving_kubelet(kube, ns):
        r = reconciler_of(mgr)
        await eventually(lambda: r.counters.reconciles >= 6, T, 0.2, what="the new operator reconciles")
        assert {c: fleet.puts(c) for c in (first, p1, p2)} == puts  # no config applied again
        assert r.counters.serve_puts == 0 and r.counters.clusters_created == []
        rc = await kube.get(RAYCLUSTERS, p1, ns)
        assert rc["metadata"]["annotations"]["rayop.io/delete-after"] == deadline  # deadline unchanged
        assert await clusters_of(kube, ns, "rs8") == sorted([first, p1, p2])  # no new cluster
        assert names(await get_rs(kube, ns, "rs8")) == names(before) == (first, p2)
        fleet.cluster(p2).set_status("RUNNING")
        await wait_rs(kube, ns, "rs8", lambda x: names(x) == (p2, ""), "the upgrade completes")
        assert r.counters.clusters_created == []
        assert sorted(await clusters_of(kube, ns, "rs8")) == sorted([first, p1, p2])  # both wait their delay
