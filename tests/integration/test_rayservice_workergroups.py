"""A RayService's worker group as a scale target, against a real kube-apiserver: the RayWorkerGroup
`<rayservice>-<group>` sizes the group on the active cluster, the pending cluster of an upgrade starts at
the scaled size, and after the promotion the same object (name, uid) selects and sizes the new cluster.

The RayCluster, RayService and RayWorkerGroup controllers run in this process as the operator's own
identity under the chart's role (tests/rbac.py); Ray's dashboards and Serve proxies are the fake fleet
(tests/fake_dashboard.py), as in test_rayservice_controller.py. The real-Ray path of a scale target is
tests/e2e/test_rayworkergroup_ray.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rayop.api import workergroup as W
from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES, RAYWORKERGROUPS
from rayop.local.plane import ControlPlane
from rayop.runtime.client import NAMESPACES, ApiClient
from rayop.webhook import SelfSignedCertSource, WebhookServer, delete_webhook_configuration
from rayop.webhook.lookup import ApiObjects, CachedObjects
from tests.fake_dashboard import FakeFleet
from tests.helpers import eventually
from tests.integration.events import wait_event
from tests.integration.rayservices import (
    cluster_config,
    clusters_of,
    get_rs,
    names,
    operator,
    rayservice,
    serving_kubelet,
)
from tests.integration.test_rayservice_controller import patch_spec, wait_ready, wait_rs
from tests.integration.test_rayworkergroup_controller import kubectl
from tests.integration.workergroups import get_rwg, set_scale

T = 60.0


@pytest.fixture
async def fleet() -> AsyncIterator[FakeFleet]:
    f = await FakeFleet(deploy_seconds=0.3).start()
    yield f
    await f.stop()


async def group_replicas(kube: ApiClient, ns: str, cluster: str) -> int:
    rc = await kube.get(RAYCLUSTERS, cluster, ns)
    return int(rc["spec"]["workerGroupSpecs"][0].get("replicas") or 0)


async def rwg_status(kube: ApiClient, ns: str, name: str, **want: Any) -> dict[str, Any] | None:
    obj = await get_rwg(kube, ns, name)
    st = (obj or {}).get("status") or {}
    return obj if obj and all(st.get(k) == v for k, v in want.items()) else None


def selector(cluster: str) -> str:
    return f"ray.io/cluster={cluster},ray.io/group=workers,ray.io/node-type=worker"


async def test_a_rayservices_worker_group_keeps_its_name_and_size_across_an_upgrade(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    async with operator(kube, ns, fleet, worker_groups=True), serving_kubelet(kube, ns):
        body = rayservice("rsw", ns)
        await kube.create(RAYSERVICES, body)
        first = names(await wait_ready(kube, ns, "rsw"))[0]

        # One RayWorkerGroup named after the service, on its active cluster; none named after the cluster.
        rwg = await eventually(
            lambda: rwg_status(kube, ns, "rsw-workers", rayClusterName=first, replicas=1, readyReplicas=1),
            T,
            0.2,
            what="RayWorkerGroup rsw-workers on the active cluster",
        )
        uid = rwg["metadata"]["uid"]
        assert rwg["spec"] == {"rayServiceName": "rsw", "groupName": "workers", "replicas": 1}
        assert rwg["status"]["selector"] == selector(first)
        assert rwg["status"]["scaledBy"] == W.SCALED_BY_SCALE_TARGET
        assert rwg["metadata"]["ownerReferences"][0]["kind"] == "RayService"
        items = (await kube.list(RAYWORKERGROUPS, ns))["items"]
        assert [i["metadata"]["name"] for i in items] == ["rsw-workers"]

        # `kubectl scale` (a write to /scale) sizes the group on the active cluster, and starts no upgrade.
        await set_scale(kube, ns, "rsw-workers", 3)
        await eventually(
            lambda: rwg_status(kube, ns, "rsw-workers", replicas=3, readyReplicas=3),
            T,
            0.2,
            what="3 ready replicas",
        )
        assert await group_replicas(kube, ns, first) == 3
        assert names(await get_rs(kube, ns, "rsw")) == (first, "")
        assert await clusters_of(kube, ns, "rsw") == [first]

        # A spec change that needs a new cluster: the pending cluster starts at the scaled size.
        fleet.deploy_seconds = None  # its applications stay DEPLOYING until told
        cfg = body["spec"]["rayClusterConfig"]
        await patch_spec(kube, ns, "rsw", {"rayClusterConfig": {**cfg, "rayVersion": "2.60.1"}})
        rs = await wait_rs(kube, ns, "rsw", lambda r: bool(names(r)[1]), "a pending cluster")
        pending = names(rs)[1]
        await eventually(lambda: kube.get_or_none(RAYCLUSTERS, pending, ns), T, 0.2, what="pending created")
        assert await group_replicas(kube, ns, pending) == 3  # the spec still says 1

        # During the upgrade the scale target sizes the cluster that serves.
        await set_scale(kube, ns, "rsw-workers", 4)
        await eventually(lambda: _is(group_replicas(kube, ns, first), 4), T, 0.2, what="active scaled to 4")
        obj = await get_rwg(kube, ns, "rsw-workers")
        assert obj is not None and obj["status"]["rayClusterName"] == first

        # Promotion: the same object now selects and sizes the new cluster, brought to the scaled 4.
        await eventually(lambda: fleet.puts(pending) == 1, T, 0.2, what="config PUT to the pending cluster")
        fleet.cluster(pending).set_status("RUNNING")
        await wait_rs(kube, ns, "rsw", lambda r: names(r) == (pending, ""), "the new cluster promoted")
        rwg = await eventually(
            lambda: rwg_status(kube, ns, "rsw-workers", rayClusterName=pending, replicas=4, readyReplicas=4),
            T,
            0.2,
            what="rsw-workers on the promoted cluster with 4 ready replicas",
        )
        assert rwg["metadata"]["uid"] == uid and rwg["spec"]["replicas"] == 4
        note = await wait_event(kube, ns, "rsw-workers", W.EV_FOLLOWED_ACTIVE_CLUSTER)
        assert f"serves from RayCluster {pending!r} now (was {first!r})" in note
        assert rwg["status"]["selector"] == selector(pending)
        assert await group_replicas(kube, ns, pending) == 4
        scale: dict[str, Any] = await kube.request("GET", RAYWORKERGROUPS.path(ns, "rsw-workers", "scale"))
        assert scale["status"]["selector"] == selector(pending)
        assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (4, 4)

        # And /scale keeps working on the new cluster.
        await set_scale(kube, ns, "rsw-workers", 5)
        await eventually(lambda: _is(group_replicas(kube, ns, pending), 5), T, 0.2, what="scaled to 5")
        items = (await kube.list(RAYWORKERGROUPS, ns))["items"]
        assert [i["metadata"]["name"] for i in items] == ["rsw-workers"]


async def _is(value: Any, want: Any) -> bool:
    return bool(await value == want)


async def test_who_owns_the_number_of_a_rayservices_group(
    plane: ControlPlane, kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    """The operator's webhook judges a scale write against the RayService (read from the operator's
    informers): refused while Ray's autoscaler sizes the group, clamped with a warning and an event
    otherwise."""
    ns = namespace
    token = uuid.uuid4().hex[:10]
    await kube.patch(NAMESPACES, ns, {"metadata": {"labels": {"rayop.test/webhook": token}}})
    async with operator(kube, ns, fleet, worker_groups=True) as mgr, serving_kubelet(kube, ns):
        auto = rayservice("rsa", ns, rayClusterConfig={**cluster_config(), "enableInTreeAutoscaling": True})
        await kube.create(RAYSERVICES, auto)
        await kube.create(RAYSERVICES, rayservice("rsm", ns))
        objects = CachedObjects(
            {res: mgr.informer(res) for res in (RAYCLUSTERS, RAYSERVICES, RAYWORKERGROUPS)}, ApiObjects(kube)
        )
        server = WebhookServer(
            "127.0.0.1", 0, cert_source=SelfSignedCertSource(["127.0.0.1"]), objects=objects
        )
        await server.start()
        name = f"rayop-rs-scale-test-{token}"
        try:
            await server.register(
                kube, name=name, namespace_selector={"matchLabels": {"rayop.test/webhook": token}}
            )
            await eventually(lambda: get_rwg(kube, ns, "rsa-workers"), T, 0.2, what="rsa-workers")

            async def refused() -> str:
                code, _, err = await kubectl(plane, "-n", ns, "scale", "rwg/rsa-workers", "--replicas=3")
                return err if code != 0 and "Ray's autoscaler sizes worker group" in err else ""

            err = await eventually(refused, 30, 0.5, what="the webhook refusing the scale write")
            assert 'RayWorkerGroup "rsa-workers" is invalid: spec.replicas: Forbidden' in err
            assert "RayService 'rsa' sets spec.rayClusterConfig.enableInTreeAutoscaling: true" in err

            active = names(await wait_ready(kube, ns, "rsm"))[0]
            await eventually(
                lambda: rwg_status(kube, ns, "rsm-workers", rayClusterName=active, replicas=1),
                T,
                0.2,
                what="rsm-workers on the active cluster",
            )
            code, _, err = await kubectl(plane, "-n", ns, "scale", "rwg/rsm-workers", "--replicas=9")
            assert code == 0, err
            assert "9 is above the group's maxReplicas (5); the group runs 5" in err
            await eventually(lambda: _is(group_replicas(kube, ns, active), 5), T, 0.2, what="clamped to 5")
            note = await wait_event(kube, ns, "rsm-workers", W.EV_CLAMPED)
            assert "runs at most 5 (maxReplicas), so it runs 5" in note
            assert names(await get_rs(kube, ns, "rsm")) == (active, "")
        finally:
            await delete_webhook_configuration(kube, name)
            await server.stop()
