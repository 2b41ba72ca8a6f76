"""The pieces of worker groups as scale targets without an API server: the scale webhook's decisions, the
RayWorkerGroup and drain Pod builders, and reading Ray's node state from dashboard answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rayop.api import constants as C
from rayop.api import workergroup as W
from rayop.base.resource import Resource
from rayop.builders import workergroup as B
from rayop.builders.options import BuildOptions
from rayop.builders.pod import build_head_pod
from rayop.controllers.common import CalmGate
from rayop.ray.dashboard import DashboardClient, DashboardError
from rayop.ray.nodes import node_loads, node_of_pod, observe_nodes
from rayop.runtime.client import CALM_IN_FLIGHT
from rayop.validation import ScaleContext, validate_scale
from rayop.webhook import make_app
from rayop.webhook.lookup import CachedObjects, worker_group_scale_context
from tests.unit.validation_cases import build

SCALE_PATH = "/validate-rayop-io-v1alpha1-rayworkergroup-scale"


def cluster(autoscaling: bool = False, **group: Any) -> dict[str, Any]:
    rc = build("RayCluster", {"metadata.name": "c", "metadata.namespace": "ns"})
    rc["metadata"]["uid"] = "uid-c"
    rc["spec"]["enableInTreeAutoscaling"] = autoscaling
    rc["spec"]["workerGroupSpecs"][0].update({"minReplicas": 1, "maxReplicas": 5, **group})
    return rc


def rwg_of(rc: dict[str, Any]) -> dict[str, Any]:
    return B.build_worker_group(rc, rc["spec"]["workerGroupSpecs"][0])


def scale(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": replicas}}


def check(replicas: int, rc: dict[str, Any] | None, old: int = 2) -> Any:
    ctx = ScaleContext(rwg_of(rc) if rc else None, rc)
    return validate_scale(W.KIND, scale(replicas), scale(old), ctx)


# The scale rule ---------------------------------------------------------------------------------------


def test_a_scale_write_is_refused_while_rays_autoscaler_sizes_the_group() -> None:
    verdict = check(3, cluster(autoscaling=True))
    assert len(verdict.errors) == 1
    text = str(verdict.errors[0])
    assert text.startswith("spec.replicas: Forbidden: Ray's autoscaler sizes worker group 'workers'")
    assert "spec.enableInTreeAutoscaling: true" in text and "(1..5)" in text
    assert "request_resources" in text and "set spec.enableInTreeAutoscaling to false" in text
    # Writing the number it already has undoes nothing.
    assert check(2, cluster(autoscaling=True), old=2).errors == []


def test_a_number_outside_the_bounds_is_accepted_with_a_warning() -> None:
    assert check(3, cluster()).errors == [] and check(3, cluster()).warnings == []
    high = check(9, cluster())
    assert high.errors == []
    assert high.warnings == ["spec.replicas: 9 is above the group's maxReplicas (5); the group runs 5"]
    assert check(0, cluster()).warnings == [
        "spec.replicas: 0 is below the group's minReplicas (1); the group runs 1"
    ]


def test_without_its_objects_the_write_is_allowed() -> None:
    ctx = ScaleContext(None, None, "connection refused")
    verdict = validate_scale(W.KIND, scale(3), scale(2), ctx)
    assert verdict.errors == [] and "connection refused" in verdict.warnings[0]
    assert check(3, None).errors == []


def test_a_rayservice_owned_group_reads_the_services_cluster_config() -> None:
    svc = build("RayService", {"metadata.name": "s"})
    svc["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = True
    group = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    verdict = validate_scale(W.KIND, scale(3), scale(1), ScaleContext(B.build_worker_group(svc, group), svc))
    assert "spec.rayClusterConfig.enableInTreeAutoscaling" in str(verdict.errors[0])


# The webhook path -------------------------------------------------------------------------------------


class Objects:
    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {(o["kind"], o["metadata"]["name"]): o for o in objs}

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objs.get((res.kind, name))


def scale_review(name: str, replicas: int, old: int = 1, sub: str = "scale") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "resource": {"group": "rayop.io", "version": "v1alpha1", "resource": "rayworkergroups"},
            "subResource": sub,
            "name": name,
            "namespace": "ns",
            "operation": "UPDATE",
            "object": scale(replicas),
            "oldObject": scale(old),
        },
    }


@pytest.fixture
async def hook() -> AsyncIterator[TestClient[Any, Any]]:
    auto, manual = cluster(autoscaling=True), cluster()
    auto["metadata"]["name"] = "auto"
    objs = Objects(
        auto, manual, B.build_worker_group(auto, auto["spec"]["workerGroupSpecs"][0]), rwg_of(manual)
    )
    async with TestClient(TestServer(make_app(objects=objs))) as client:
        yield client


async def test_the_webhook_judges_scale_writes_against_the_owning_cluster(hook: TestClient[Any, Any]) -> None:
    resp = await (await hook.post(SCALE_PATH, json=scale_review("auto-workers", 3))).json()
    assert resp["response"]["allowed"] is False
    status = resp["response"]["status"]
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith(
        'RayWorkerGroup.rayop.io "auto-workers" is invalid: spec.replicas: Forbidden'
    )
    resp = await (await hook.post(SCALE_PATH, json=scale_review("c-workers", 8))).json()
    assert resp["response"]["allowed"] is True
    assert resp["response"]["warnings"] == [
        "spec.replicas: 8 is above the group's maxReplicas (5); the group runs 5"
    ]
    # An unknown object, or a review of something else than the scale subresource: allowed.
    assert (await (await hook.post(SCALE_PATH, json=scale_review("nope", 3))).json())["response"]["allowed"]
    other = scale_review("auto-workers", 3, sub="")
    assert (await (await hook.post(SCALE_PATH, json=other)).json())["response"]["allowed"]


async def test_cached_objects_fall_back_to_a_read_on_a_miss() -> None:
    class Cache:
        def __init__(self, objs: dict[str, Any]) -> None:
            self.objs = objs

        def get(self, ns: str | None, name: str) -> Any:
            return self.objs.get(name)

        def list(self, ns: str | None = None, labels: Any = None) -> list[Any]:
            return []

        def by_index(self, name: str, value: str) -> list[Any]:
            return []

    rc = cluster(autoscaling=True)
    from rayop.api.kinds import RAYCLUSTERS, RAYWORKERGROUPS

    reader = CachedObjects({RAYWORKERGROUPS: Cache({"c-workers": rwg_of(rc)})}, Objects(rc))
    ctx = await worker_group_scale_context(reader, "ns", "c-workers")
    assert ctx.owner is rc and ctx.target is not None
    ctx = await worker_group_scale_context(None, "ns", "c-workers")
    assert ctx.unreadable and ctx.target is None
    assert RAYCLUSTERS.kind == C.KIND_RAYCLUSTER


# Builders ---------------------------------------------------------------------------------------------


def test_a_worker_group_is_named_after_its_cluster_and_owned_by_it() -> None:
    rc = cluster(replicas=3)
    obj = rwg_of(rc)
    assert obj["apiVersion"] == "rayop.io/v1alpha1" and obj["kind"] == "RayWorkerGroup"
    assert obj["metadata"]["name"] == "c-workers" and obj["metadata"]["namespace"] == "ns"
    assert obj["spec"] == {"rayClusterName": "c", "groupName": "workers", "replicas": 3}
    ref = obj["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("RayCluster", "c", "uid-c", True)
    assert obj["metadata"]["labels"][C.LABEL_CLUSTER] == "c"
    assert (
        B.worker_selector("c", "workers") == "ray.io/cluster=c,ray.io/group=workers,ray.io/node-type=worker"
    )


def test_a_drain_pod_is_the_head_pod_running_ray_drain_node_and_never_ready() -> None:
    rc = cluster()
    rc["spec"]["headGroupSpec"]["rayStartParams"] = {"port": "6380"}
    head = build_head_pod(rc, BuildOptions())
    owner = rwg_of(rc)
    owner["metadata"]["uid"] = "uid-rwg"
    pod = B.build_drain_pod(
        rc,
        head,
        owner,
        group="workers",
        worker_pod="c-workers-worker-abcde",
        node_id="ab12",
        message="why not",
        suffix="x1y2z",
    )
    md = pod["metadata"]
    assert md["name"] == B.drain_pod_name("c", "c-workers-worker-abcde", "x1y2z") and len(md["name"]) <= 63
    assert md["labels"][C.LABEL_NODE_TYPE] == W.NODE_TYPE_DRAIN and md["labels"][C.LABEL_GROUP] == "workers"
    assert md["annotations"] == {
        W.ANN_DRAIN_WORKER_POD: "c-workers-worker-abcde",
        W.ANN_DRAIN_RAY_NODE_ID: "ab12",
    }
    assert md["ownerReferences"][0]["kind"] == "RayWorkerGroup"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 120
    (ray,) = spec["containers"]
    assert ray["command"] == ["/bin/bash", "-c", "--"]
    script = ray["args"][0]
    assert "ray drain-node --address=c-head-svc.ns.svc.cluster.local:6380 --node-id=ab12" in script
    assert "--reason=DRAIN_NODE_REASON_IDLE_TERMINATION" in script and "'--reason-message=why not'" in script
    assert f"exit {W.DRAIN_EXIT_REFUSED}" in script
    assert ray["readinessProbe"]["exec"]["command"] == ["false"]
    assert "ports" not in ray and "livenessProbe" not in ray
    assert ray["resources"] == B.DRAIN_RESOURCES
    # The head's environment (Ray auth, TLS) comes along.
    assert any(e["name"] == C.ENV_RAY_CLUSTER_NAME for e in ray["env"])


# Ray's node state ------------------------------------------------------------------------------------

# Shapes as Ray 2.60's dashboard answers (/nodes?view=summary, /api/v0/tasks, /api/v0/actors).
SUMMARY = {
    "result": True,
    "data": {
        "summary": [
            {"raylet": {"nodeId": "h", "instanceId": "", "state": "ALIVE", "isHeadNode": True}},
            {
                "raylet": {
                    "nodeId": "n1",
                    "instanceId": "pod-1",
                    "nodeManagerAddress": "10.0.0.1",
                    "state": "ALIVE",
                    "storeStats": {"objectStoreBytesAvail": "100", "numObjectStorePrimaryCopies": "2"},
                }
            },
            {"raylet": {"nodeId": "n2", "instanceId": "pod-2", "state": "ALIVE"}},
            {"raylet": {"nodeId": "n0", "instanceId": "pod-2", "state": "DEAD"}},
            {
                "raylet": {
                    "nodeId": "n3",
                    "instanceId": "",
                    "nodeManagerAddress": "10.0.0.3",
                    "state": "ALIVE",
                }
            },
        ]
    },
}


def state(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "result": True,
        "msg": "",
        "data": {"result": {"total": len(rows), "num_after_truncation": len(rows), "result": rows}},
    }


TASKS = [
    {"task_id": "t", "state": "RUNNING", "node_id": "n2"},
    {"task_id": "u", "state": "PENDING_NODE_ASSIGNMENT"},
]
ACTORS = [{"actor_id": "a", "state": "ALIVE", "node_id": "n3"}]


def test_node_loads_join_the_three_answers() -> None:
    nodes = {
        n.node_id: n for n in node_loads([r["raylet"] for r in SUMMARY["data"]["summary"]], TASKS, ACTORS)
    }
    assert nodes["n1"].primary_copies == 2 and not nodes["n1"].idle
    assert nodes["n1"].why_busy() == "2 objects (primary copies)"
    assert nodes["n2"].tasks == 1 and nodes["n3"].actors == 1 and nodes["h"].is_head
    assert nodes["n0"].alive is False
    live = list(nodes.values())
    assert node_of_pod(live, "pod-2", "").node_id == "n2"  # type: ignore[union-attr]
    assert node_of_pod(live, "pod-x", "10.0.0.3").node_id == "n3"  # type: ignore[union-attr]
    assert node_of_pod(live, "pod-x", "10.0.0.9") is None


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[DashboardClient, list[str]]]:
    seen: list[str] = []

    async def nodes(request: web.Request) -> web.Response:
        seen.append(str(request.rel_url))
        return web.json_response(SUMMARY)

    async def tasks(request: web.Request) -> web.Response:
        seen.append(str(request.rel_url))
        return web.json_response(state(TASKS))

    async def actors(request: web.Request) -> web.Response:
        seen.append(str(request.rel_url))
        return web.json_response(state(ACTORS))

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"result": False, "msg": "GCS down", "data": {}})

    app = web.Application()
    app.router.add_get("/nodes", nodes)
    app.router.add_get("/api/v0/tasks", tasks)
    app.router.add_get("/api/v0/actors", actors)
    app.router.add_get("/api/v0/objects", broken)
    server = TestServer(app)
    await server.start_server()
    client = DashboardClient.direct(f"127.0.0.1:{server.port}")
    try:
        yield client, seen
    finally:
        await client.close()
        await server.close()


async def test_observe_nodes_asks_the_dashboard_with_filters(
    dashboard: tuple[DashboardClient, list[str]],
) -> None:
    client, seen = dashboard
    nodes = await observe_nodes(client)
    assert {n.node_id for n in nodes} == {"h", "n1", "n2", "n0", "n3"}
    assert "/nodes?view=summary" in seen
    tasks = next(u for u in seen if u.startswith("/api/v0/tasks"))
    assert (
        "limit=10000" in tasks and tasks.count("filter_keys=state") == 2 and "filter_values=FINISHED" in tasks
    )
    with pytest.raises(DashboardError, match="GCS down"):
        await client.list_state("objects")


# Status writes ---------------------------------------------------------------------------------------


def _paced_reconciler(clock: list[float]) -> tuple[Any, Any, list[tuple[int, int]]]:
    from rayop.controllers.rayworkergroup import RayWorkerGroupReconciler, Store
    from rayop.controllers.settings import WorkerGroupSettings
    from rayop.runtime.client import ApiClient, ClientConfig
    from tests.unit.fakekube import FakeRecorder

    client = ApiClient(ClientConfig(server="https://127.0.0.1:1"))
    unused: Any = None
    r = RayWorkerGroupReconciler(
        client,
        Store(unused, unused, unused, unused),
        FakeRecorder(),
        WorkerGroupSettings(),
        BuildOptions(),
        now=lambda: clock[0],
    )
    written: list[tuple[int, int]] = []

    async def write_status(_res: Resource, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        written.append((status["replicas"], status["readyReplicas"]))
        return {**obj, "status": status}

    r.w.write_status = write_status  # type: ignore[method-assign]
    return r, client, written


async def test_ready_replicas_counted_up_are_written_a_few_times_not_each() -> None:
    """Progress alone waits 1 s after the group's last status write (doubling in a row), a first status
    1 s after the group was first seen; the count reaching all replicas is written at once."""
    clock = [1000.0]
    r, client, written = _paced_reconciler(clock)
    obj = rwg_of(cluster())
    obj["metadata"]["resourceVersion"] = "1"
    status = {"replicas": 10, "readyReplicas": 0, "selector": "s"}
    waits: list[float | None] = []
    for ready in range(1, 11):  # one more ready Pod every 0.3 s
        clock[0] += 0.3
        res = await r._write_status(obj, {**status, "readyReplicas": ready}, 10)
        waits.append(res.requeue_after)
        if written and written[-1][1] == ready:
            obj = {**obj, "status": {**status, "readyReplicas": ready}}
    await client.close()
    # 1..4 wait (first seen 1 s ago not yet), 5 goes; 6..9 wait (2 s); 10 is all of them.
    assert [ready for _, ready in written] == [5, 10]
    assert all(w and w > 0 for w, n in zip(waits, range(1, 11), strict=True) if n not in (5, 10))


async def test_pods_being_created_are_counted_in_one_write_once_all_exist() -> None:
    """While the RayCluster controller creates a new group's Pods, the RayWorkerGroup's first status
    waits for them (up to 1 s) instead of following each create."""
    clock = [1000.0]
    r, client, written = _paced_reconciler(clock)
    obj = rwg_of(cluster())
    obj["metadata"]["resourceVersion"] = "1"
    for pods in range(0, 11):  # one more Pod every 0.05 s
        clock[0] += 0.05
        res = await r._write_status(obj, {"replicas": pods, "readyReplicas": 0, "selector": "s"}, 10)
        assert res.requeue_after and res.requeue_after > 0  # all short of 10 ready: progress
    assert written == []
    clock[0] += 1.0  # the requeue comes back: the first status goes, with every Pod counted
    assert (
        await r._write_status(obj, {"replicas": 10, "readyReplicas": 0, "selector": "s"}, 10)
    ).requeue_after is None
    await client.close()
    assert written == [(10, 0)]


def test_the_calm_gate_puts_bookkeeping_off_during_a_burst_for_a_bounded_time() -> None:
    busy = [True]
    gate = CalmGate(lambda: busy[0], longest=5.0)
    key = ("ns", "rc-workers")
    assert gate.wait(key, 100.0) == CalmGate.RECHECK
    assert gate.wait(key, 104.9) == pytest.approx(0.1)
    assert gate.wait(key, 105.0) == 0.0  # waited long enough: goes even though the burst goes on
    assert gate.wait(key, 105.1) == CalmGate.RECHECK  # a later write waits afresh
    busy[0] = False
    assert gate.wait(key, 105.2) == 0.0
    assert CalmGate(lambda: True, longest=0.0).wait(key, 1.0) == 0.0  # turned off


async def test_a_new_worker_group_waits_while_pod_creates_are_in_flight() -> None:
    from rayop.controllers.rayworkergroup import CACHE_LAG_REQUEUE, CREATED_CACHE_WAIT

    clock = [1000.0]
    r, client, _ = _paced_reconciler(clock)
    created: list[str] = []

    async def create_group(_owner: dict[str, Any], group: Mapping[str, Any]) -> None:
        created.append(str(group.get("groupName")))

    class Groups:
        def get(self, _ns: str, _name: str) -> None:
            return None

    r._create_group = create_group  # type: ignore[method-assign]
    r.store.groups = Groups()
    rc = cluster()
    group = rc["spec"]["workerGroupSpecs"][0]
    for _ in range(CALM_IN_FLIGHT + 1):
        client._started()  # a burst of requests in flight
    res = await r._one_group(rc, "rc-workers", group, None)
    assert created == [] and res.requeue_after == CalmGate.RECHECK
    for _ in range(CALM_IN_FLIGHT + 1):
        client._finished()
    await r._one_group(rc, "rc-workers", group, None)
    assert created == [str(group.get("groupName"))]
    # The cache has not seen it yet: wait for the cache, do not create it again (409).
    clock[0] += 1.0
    res = await r._one_group(rc, "rc-workers", group, None)
    assert len(created) == 1 and res.requeue_after == CACHE_LAG_REQUEUE
    clock[0] += CREATED_CACHE_WAIT  # still missing long after: someone deleted it, so it comes back
    await r._one_group(rc, "rc-workers", group, None)
    assert len(created) == 2
    await client.close()
