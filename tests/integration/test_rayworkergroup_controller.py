"""Worker groups as scale targets against a real kube-apiserver: the RayWorkerGroup's scale subresource,
`kubectl scale` and `kubectl get rwg`, the number flowing both ways, clamping, the webhook refusing a
number Ray's autoscaler owns, safe scale-down choices, and RayWorkerGroups following their groups.

Ray's node state comes from a stand-in dashboard and drain Pods are answered by a stand-in kubelet
(tests/integration/workergroups.py); tests/e2e/test_rayworkergroup_ray.py runs the same path on real Ray.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rayop.api import workergroup as W
from rayop.api.kinds import RAYCLUSTERS, RAYWORKERGROUPS
from rayop.local.plane import ControlPlane
from rayop.runtime.client import NAMESPACES, PODS, ApiClient, ApiError
from rayop.webhook import SelfSignedCertSource, WebhookServer, delete_webhook_configuration
from rayop.webhook.lookup import ApiObjects, CachedObjects
from tests.helpers import eventually
from tests.integration.events import events_of, wait_event
from tests.integration.rayclusters import fake_kubelet, pods_of, raycluster
from tests.integration.workergroups import (
    FakeRayState,
    Load,
    drain_kubelet,
    get_rwg,
    operator,
    set_scale,
)

T = 60.0


def cluster(
    name: str, ns: str, *, replicas: int = 2, lo: int = 0, hi: int = 5, **spec: Any
) -> dict[str, Any]:
    rc = raycluster(name, ns, replicas=replicas, **spec)
    rc["spec"]["workerGroupSpecs"][0].update({"minReplicas": lo, "maxReplicas": hi})
    return rc


async def kubectl(plane: ControlPlane, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(plane.bin_dir / "kubectl"),
        f"--kubeconfig={plane.kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def group_replicas(kube: ApiClient, ns: str, name: str, index: int = 0) -> int:
    rc = await kube.get(RAYCLUSTERS, name, ns)
    return int(rc["spec"]["workerGroupSpecs"][index].get("replicas") or 0)


async def status_is(kube: ApiClient, ns: str, name: str, **want: Any) -> bool:
    obj = await get_rwg(kube, ns, name)
    st = (obj or {}).get("status") or {}
    return all(st.get(k) == v for k, v in want.items())


@pytest.fixture
async def ray(kube: ApiClient, namespace: str) -> AsyncIterator[FakeRayState]:
    state = await FakeRayState(kube, namespace).start()
    yield state
    await state.stop()


async def test_scale_up_and_down_through_the_scale_subresource_and_back(
    kube: ApiClient, namespace: str, ray: FakeRayState
) -> None:
    ns = namespace
    async with operator(kube, ns, state=ray), fake_kubelet(kube, ns), drain_kubelet(kube, ray) as drained:
        await kube.create(RAYCLUSTERS, cluster("c", ns, replicas=2))
        await eventually(
            lambda: status_is(
                kube, ns, "c-workers", replicas=2, readyReplicas=2, scaledBy=W.SCALED_BY_SCALE_TARGET
            ),
            T,
            what="RayWorkerGroup c-workers with 2 ready replicas",
        )
        rwg = await get_rwg(kube, ns, "c-workers")
        assert rwg is not None and rwg["spec"] == {
            "rayClusterName": "c",
            "groupName": "workers",
            "replicas": 2,
        }
        assert rwg["status"]["selector"] == "ray.io/cluster=c,ray.io/group=workers,ray.io/node-type=worker"
        assert rwg["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"

        # Up, as the HPA writes it: the RayCluster follows, its Pods come, the status counts them.
        scale = await set_scale(kube, ns, "c-workers", 4)
        assert scale["kind"] == "Scale" and scale["status"]["selector"].startswith("ray.io/cluster=c")
        await eventually(
            lambda: status_is(kube, ns, "c-workers", replicas=4, readyReplicas=4), T, what="4 up"
        )
        assert await group_replicas(kube, ns, "c") == 4
        read: dict[str, Any] = await kube.request("GET", RAYWORKERGROUPS.path(ns, "c-workers", "scale"))
        assert (read["spec"]["replicas"], read["status"]["replicas"]) == (4, 4)

        # Down to 1 with one worker busy: the idle ones are drained and named, the busy one stays.
        pods = sorted(p["metadata"]["name"] for p in await pods_of(kube, ns, "c", "worker"))
        busy = pods[0]
        ray.busy[busy] = Load(tasks=1)
        await set_scale(kube, ns, "c-workers", 1)
        await eventually(lambda: status_is(kube, ns, "c-workers", replicas=1), T, what="scaled down to 1")
        left = [p["metadata"]["name"] for p in await pods_of(kube, ns, "c", "worker")]
        assert left == [busy]
        assert sorted(drained) == sorted(pods[1:])
        rc = await kube.get(RAYCLUSTERS, "c", ns)
        assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == 1
        assert "Ray drained its node" in await wait_event(kube, ns, "c-workers", W.EV_SELECTED_WORKER)
        assert "is idle (no running tasks or actors" in await wait_event(
            kube, ns, "c-workers", W.EV_DRAINING_WORKER
        )

        # Then to 0: the busy worker is never removed, and the events say why ...
        await set_scale(kube, ns, "c-workers", 0)

        async def says_busy() -> bool:
            return any(
                r == W.EV_WORKERS_BUSY and f"{busy} runs 1 task" in n
                for r, n in await events_of(kube, ns, "c-workers")
            )

        await eventually(says_busy, T, what="a WorkersBusy event naming the task")
        cond = ((await get_rwg(kube, ns, "c-workers")) or {})["status"]["conditions"][0]
        assert (cond["status"], cond["reason"]) == ("False", W.REASON_WAITING_FOR_IDLE)
        assert [p["metadata"]["name"] for p in await pods_of(kube, ns, "c", "worker")] == [busy]
        # ... until it is idle.
        ray.busy.pop(busy)
        await eventually(lambda: status_is(kube, ns, "c-workers", replicas=0), T, what="scaled down to 0")
        assert await group_replicas(kube, ns, "c") == 0

        # An edit of the RayCluster comes back into spec.replicas.
        await kube.patch(
            RAYCLUSTERS,
            "c",
            [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3}],
            ns,
            patch_type="json",
        )

        async def follows() -> bool:
            obj = await get_rwg(kube, ns, "c-workers")
            return bool(obj and obj["spec"]["replicas"] == 3 and obj["status"].get("replicas") == 3)

        await eventually(follows, T, what="spec.replicas follows the RayCluster edit")
        await wait_event(kube, ns, "c-workers", W.EV_SYNCED_FROM_CLUSTER, "edited to 3 replicas")
        # Finished drain Pods are gone, and so are the names of the deleted Pods.
        drains = await kube.list(PODS, ns, label_selector=f"ray.io/node-type={W.NODE_TYPE_DRAIN}")
        assert [d for d in drains["items"] if not d["metadata"].get("deletionTimestamp")] == []
        rc = await kube.get(RAYCLUSTERS, "c", ns)
        assert not (rc["spec"]["workerGroupSpecs"][0].get("scaleStrategy") or {}).get("workersToDelete")


async def test_workers_drained_for_a_scale_down_the_hpa_reverses_are_replaced(
    kube: ApiClient, namespace: str, ray: FakeRayState
) -> None:
    """3 -> 1 -> 2 with the drains still running when the size goes back up: Ray ends both drained
    raylets, so both Pods go; one lowers the count, the other is replaced by a new Pod."""
    ns = namespace
    async with operator(kube, ns, state=ray), fake_kubelet(kube, ns):
        await kube.create(RAYCLUSTERS, cluster("f", ns, replicas=3))
        await eventually(
            lambda: status_is(kube, ns, "f-workers", replicas=3, readyReplicas=3), T, what="3 ready"
        )
        await set_scale(kube, ns, "f-workers", 1)

        async def drain_pods() -> list[str]:
            sel = f"ray.io/cluster=f,ray.io/node-type={W.NODE_TYPE_DRAIN}"
            items = (await kube.list(PODS, ns, label_selector=sel))["items"]
            return [p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")]

        await eventually(lambda: _len_is(drain_pods(), 2), T, what="2 drain Pods")
        await set_scale(kube, ns, "f-workers", 2)
        # Ray answers the drains only now, after the size went back up.
        async with drain_kubelet(kube, ray) as drained:

            async def settled() -> bool:
                names = {p["metadata"]["name"] for p in await pods_of(kube, ns, "f", "worker")}
                return (
                    len(drained) == 2
                    and len(names) == 2
                    and not names & set(drained)
                    and await status_is(kube, ns, "f-workers", replicas=2, readyReplicas=2)
                )

            try:
                await eventually(settled, T, what="2 workers, neither of them drained")
            except AssertionError as e:
                raise AssertionError(f"{e}\nevents: {await events_of(kube, ns, 'f-workers')}") from None
        assert await group_replicas(kube, ns, "f") == 2
        assert "a new Pod takes its place" in await wait_event(
            kube, ns, "f-workers", W.EV_SELECTED_WORKER, "Replacing"
        )
        # The drain Pods go once their workers are gone; the listing of deleted names is cleared.
        await eventually(lambda: _len_is(drain_pods(), 0), T, what="drain Pods deleted")

        async def unlisted() -> bool:
            rc = await kube.get(RAYCLUSTERS, "f", ns)
            return not (rc["spec"]["workerGroupSpecs"][0].get("scaleStrategy") or {}).get("workersToDelete")

        await eventually(unlisted, T, what="workersToDelete cleared")


async def _len_is(coro: Any, n: int) -> bool:
    return len(await coro) == n


async def test_kubectl_scale_get_and_clamping(plane: ControlPlane, kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns), fake_kubelet(kube, ns):
        await kube.create(RAYCLUSTERS, cluster("k", ns, replicas=1, lo=1, hi=3))
        await eventually(lambda: status_is(kube, ns, "k-workers", readyReplicas=1), T, what="k-workers ready")
        code, out, err = await kubectl(plane, "-n", ns, "scale", "rwg/k-workers", "--replicas=2")
        assert code == 0, err
        assert "scaled" in out
        await eventually(
            lambda: status_is(kube, ns, "k-workers", replicas=2, readyReplicas=2), T, what="2 ready"
        )

        code, out, err = await kubectl(plane, "-n", ns, "get", "rwg")
        assert code == 0, err
        header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
        assert header == ["NAME", "CLUSTER", "GROUP", "DESIRED", "READY", "MIN", "MAX", "SCALED", "BY", "AGE"]
        assert row[:8] == ["k-workers", "k", "workers", "2", "2", "1", "3", "ScaleTarget"]

        # Above maxReplicas: accepted, clamped, said once on the object.
        code, out, err = await kubectl(plane, "-n", ns, "scale", "rayworkergroup/k-workers", "--replicas=9")
        assert code == 0, err
        await eventually(
            lambda: status_is(kube, ns, "k-workers", replicas=3, readyReplicas=3), T, what="clamped to 3"
        )
        assert await group_replicas(kube, ns, "k") == 3
        assert (await get_rwg(kube, ns, "k-workers") or {})["spec"]["replicas"] == 9
        note = await wait_event(kube, ns, "k-workers", W.EV_CLAMPED)
        assert (
            note == "Asked for 9 replicas; worker group 'workers' runs at most 3 (maxReplicas), so it runs 3"
        )


async def test_renaming_or_removing_a_group_deletes_its_rayworkergroup(
    kube: ApiClient, namespace: str
) -> None:
    ns = namespace
    rc = cluster("r", ns, replicas=0)
    second = dict(rc["spec"]["workerGroupSpecs"][0], groupName="b")
    rc["spec"]["workerGroupSpecs"].append(second)
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, rc)

        async def names() -> list[str]:
            items = (await kube.list(RAYWORKERGROUPS, ns))["items"]
            return sorted(i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp"))

        await eventually(lambda: _eq(names(), ["r-b", "r-workers"]), T, what="one per group")
        await kube.patch(
            RAYCLUSTERS,
            "r",
            [{"op": "replace", "path": "/spec/workerGroupSpecs/1/groupName", "value": "c"}],
            ns,
            patch_type="json",
        )
        await eventually(lambda: _eq(names(), ["r-c", "r-workers"]), T, what="renamed group")
        await kube.patch(
            RAYCLUSTERS, "r", [{"op": "remove", "path": "/spec/workerGroupSpecs/1"}], ns, patch_type="json"
        )
        await eventually(lambda: _eq(names(), ["r-workers"]), T, what="removed group")

        async def reported() -> bool:
            reasons = [r for r, _ in await events_of(kube, ns, "r")]
            return reasons.count(W.EV_DELETED) >= 2 and W.EV_CREATED in reasons

        await eventually(reported, T, what="Created/Deleted events on the RayCluster")
        # Deleting the cluster takes its RayWorkerGroups along (owner references).
        await kube.delete(RAYCLUSTERS, "r", ns)
        await eventually(lambda: _eq(names(), []), T, what="garbage-collected with the cluster")


async def _eq(value: Any, want: Any) -> bool:
    return bool(await value == want)


async def test_rays_autoscaler_owns_the_number(plane: ControlPlane, kube: ApiClient, namespace: str) -> None:
    """With the webhook registered a scale write is refused with why and what to do; without it, the
    controller puts the autoscaler's number back."""
    ns = namespace
    token = uuid.uuid4().hex[:10]
    await kube.patch(NAMESPACES, ns, {"metadata": {"labels": {"rayop.test/webhook": token}}})
    rc = cluster("a", ns, replicas=1, enableInTreeAutoscaling=True)
    async with operator(kube, ns) as mgr:
        await kube.create(RAYCLUSTERS, rc)
        await eventually(
            lambda: status_is(kube, ns, "a-workers", scaledBy=W.SCALED_BY_RAY_AUTOSCALER),
            T,
            what="autoscaled group",
        )
        # Without a webhook: the write lands, and is undone with a Warning event.
        await set_scale(kube, ns, "a-workers", 4)

        async def reverted() -> bool:
            obj = await get_rwg(kube, ns, "a-workers")
            return bool(obj and obj["spec"]["replicas"] == 1)

        await eventually(reverted, T, what="the autoscaler's number back")
        await wait_event(kube, ns, "a-workers", W.EV_SCALE_IGNORED, "spec.replicas=4 was ignored")
        assert await group_replicas(kube, ns, "a") == 1

        # The operator's webhook reads the RayWorkerGroup and its RayCluster from the manager's informers.
        objects = CachedObjects(
            {RAYCLUSTERS: mgr.informer(RAYCLUSTERS), RAYWORKERGROUPS: mgr.informer(RAYWORKERGROUPS)},
            ApiObjects(kube),
        )
        server = WebhookServer(
            "127.0.0.1", 0, cert_source=SelfSignedCertSource(["127.0.0.1"]), objects=objects
        )
        await server.start()
        name = f"rayop-scale-test-{token}"
        try:
            await server.register(
                kube, name=name, namespace_selector={"matchLabels": {"rayop.test/webhook": token}}
            )

            async def refused() -> str:
                code, _, err = await kubectl(plane, "-n", ns, "scale", "rwg/a-workers", "--replicas=3")
                return err if code != 0 and "Ray's autoscaler sizes worker group" in err else ""

            err = await eventually(refused, 30, 0.5, what="the webhook refusing the scale write")
            assert 'RayWorkerGroup "a-workers" is invalid: spec.replicas: Forbidden' in err
            assert "enableInTreeAutoscaling to false" in err
            with pytest.raises(ApiError) as e:
                await set_scale(kube, ns, "a-workers", 2)
            assert e.value.status == 422
            # A manually scaled cluster next to it is scaled normally through the same webhook.
            await kube.create(RAYCLUSTERS, cluster("m", ns, replicas=1, hi=2))
            await eventually(lambda: get_rwg(kube, ns, "m-workers"), T, what="m-workers")
            code, _, err = await kubectl(plane, "-n", ns, "scale", "rwg/m-workers", "--replicas=5")
            assert code == 0, err
            assert "5 is above the group's maxReplicas (2); the group runs 2" in err
        finally:
            await delete_webhook_configuration(kube, name)
            await server.stop()


async def test_without_rays_state_only_pods_that_run_nothing_go(
    kube: ApiClient, namespace: str, ray: FakeRayState
) -> None:
    ns = namespace
    ray.down = True
    async with operator(kube, ns, state=ray), fake_kubelet(kube, ns):
        await kube.create(RAYCLUSTERS, cluster("d", ns, replicas=2))
        await eventually(lambda: status_is(kube, ns, "d-workers", readyReplicas=2), T, what="2 ready")
        await set_scale(kube, ns, "d-workers", 1)

        async def reported() -> bool:
            return W.EV_RAY_UNREACHABLE in [r for r, _ in await events_of(kube, ns, "d-workers")]

        await eventually(reported, T, what="RayStateUnavailable event")
        assert len(await pods_of(kube, ns, "d", "worker")) == 2
        assert await group_replicas(kube, ns, "d") == 2
        ray.down = False
        async with drain_kubelet(kube, ray):
            await eventually(
                lambda: status_is(kube, ns, "d-workers", replicas=1), T, what="scaled down once Ray answers"
            )
