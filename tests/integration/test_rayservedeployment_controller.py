"""Serve deployments as scale targets against a real kube-apiserver: the RayService controller keeps a
RayServeDeployment per deployment, a write to its scale subresource becomes the deployment's num_replicas
in the Serve config PUT to the active cluster (in place: no new cluster, no PUT when nothing changes), an
edit of num_replicas in serveConfigV2 flows back into spec.replicas, and the webhook refuses a scale write
for a deployment Serve's own autoscaler sizes.

Ray is the stand-in fleet (tests/fake_dashboard.py); tests/e2e/test_hpa_ray.py runs the same path on real
Ray with the HPA.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from rayop.api import servedeployment as SD
from rayop.api.kinds import RAYCLUSTERS, RAYSERVEDEPLOYMENTS, RAYSERVICES
from rayop.base.objects import name_of
from rayop.builders import servedeployment as SDB
from rayop.builders.rayservice import serve_config
from rayop.local.plane import ControlPlane
from rayop.runtime.client import NAMESPACES, ApiClient, ApiError
from rayop.webhook import SelfSignedCertSource, WebhookServer, delete_webhook_configuration
from rayop.webhook.lookup import ApiObjects, CachedObjects, serve_deployment_scale_context
from tests.fake_dashboard import FakeFleet
from tests.helpers import eventually
from tests.integration.events import wait_event
from tests.integration.rayservices import clusters_of, names, operator, rayservice, serving_kubelet
from tests.integration.test_rayworkergroup_controller import kubectl

T = 60.0

SERVE = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
    deployments:
      - name: Model
        num_replicas: 1
  - name: auto
    route_prefix: /auto
    import_path: auto:build
    deployments:
      - name: Scaled
        autoscaling_config:
          min_replicas: 2
          max_replicas: 4
"""


@pytest.fixture
async def fleet() -> Any:
    f = await FakeFleet(deploy_seconds=0.2).start()
    yield f
    await f.stop()


async def rsd(kube: ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    return await kube.get_or_none(RAYSERVEDEPLOYMENTS, name, ns)


async def set_scale(kube: ApiClient, ns: str, name: str, replicas: int) -> dict[str, Any]:
    out: dict[str, Any] = await kube.patch(
        RAYSERVEDEPLOYMENTS, name, {"spec": {"replicas": replicas}}, ns, sub="scale", patch_type="merge"
    )
    return out


def put_replicas(fleet: FakeFleet, cluster: str, app: str, deployment: str) -> int | None:
    """num_replicas of a deployment in the last config PUT to the cluster."""
    cfg = fleet.cluster(cluster).config or {}
    for a in cfg.get("applications") or []:
        if a.get("name") == app:
            for d in a.get("deployments") or []:
                if d.get("name") == deployment:
                    n = d.get("num_replicas")
                    return n if isinstance(n, int) else None
    return None


async def test_a_scale_write_becomes_num_replicas_in_place(
    kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    async with serving_kubelet(kube, ns), operator(kube, ns, fleet):
        await kube.create(RAYSERVICES, rayservice("rs", ns, serveConfigV2=SERVE))

        async def made() -> bool:
            a, b = await rsd(kube, ns, "rs-hello-model"), await rsd(kube, ns, "rs-auto-scaled")
            return bool(
                a
                and b
                and (a.get("status") or {}).get("scaledBy")
                and (b.get("status") or {}).get("scaledBy")
            )

        await eventually(made, T, 0.2, what="a RayServeDeployment per deployment, with a status")
        active = names(await kube.get(RAYSERVICES, "rs", ns))[0]
        model = await rsd(kube, ns, "rs-hello-model")
        assert model is not None
        assert model["spec"] == {
            "rayServiceName": "rs",
            "applicationName": "hello",
            "deploymentName": "Model",
            "replicas": 1,
        }
        st = model["status"]
        assert st["scaledBy"] == SD.SCALED_BY_SCALE_TARGET and st["rayClusterName"] == active
        assert (st["replicas"], st["readyReplicas"], st["configReplicas"]) == (1, 1, 1)
        auto = await rsd(kube, ns, "rs-auto-scaled")
        assert auto is not None and auto["status"]["scaledBy"] == SD.SCALED_BY_SERVE_AUTOSCALER
        assert auto["spec"]["replicas"] == 2  # mirrors Serve's target
        assert fleet.puts(active) == 1  # nothing scaled yet: the config as written, once

        # The scale subresource (what an HPA writes): the Serve config is PUT again, in place.
        scale = await kube.get(RAYSERVEDEPLOYMENTS, "rs-hello-model", ns, sub="scale")
        assert scale["status"]["selector"].startswith(f"ray.io/cluster={active},")
        await set_scale(kube, ns, "rs-hello-model", 3)
        await eventually(
            lambda: put_replicas(fleet, active, "hello", "Model") == 3, T, 0.2, what="PUT with 3"
        )

        async def observed() -> bool:
            obj = await rsd(kube, ns, "rs-hello-model")
            st = (obj or {}).get("status") or {}
            return (
                bool(obj)
                and st.get("observedGeneration") == obj["metadata"]["generation"]
                and st.get("replicas") == 3
            )

        await eventually(observed, T, 0.2, what="3 replicas observed")
        assert await clusters_of(kube, ns, "rs") == [active]  # no new cluster
        puts = fleet.cluster(active).puts
        assert len(puts) == 2
        # Only the scaled deployment changed; the other application is PUT exactly as written.
        assert puts[1]["applications"][1] == serve_config(SERVE)["applications"][1]
        cluster = await kube.get(RAYCLUSTERS, active, ns)
        assert cluster["metadata"]["annotations"]["rayop.io/serve-config-hash"] == SDB.applied_hash(
            SERVE, {("hello", "Model"): 3}
        )
        await wait_event(kube, ns, "rs-hello-model", "ScaledServeDeployment")

        # An edit of num_replicas in serveConfigV2 flows back into spec.replicas.
        edited = SERVE.replace("num_replicas: 1", "num_replicas: 2")
        await kube.patch(RAYSERVICES, "rs", {"spec": {"serveConfigV2": edited}}, ns, patch_type="merge")

        async def followed() -> bool:
            obj = await rsd(kube, ns, "rs-hello-model")
            return bool(obj and obj["spec"]["replicas"] == 2 and obj["status"].get("configReplicas") == 2)

        await eventually(followed, T, 0.2, what="spec.replicas following serveConfigV2")
        await eventually(
            lambda: put_replicas(fleet, active, "hello", "Model") == 2, T, 0.2, what="PUT with 2"
        )
        await wait_event(kube, ns, "rs-hello-model", "ReplicasChangedInServeConfig")
        # A number Serve runs from the config alone needs no override, so nothing more is PUT.
        n = fleet.puts(active)
        await asyncio.sleep(2)
        assert fleet.puts(active) == n

        # Deleting the application from serveConfigV2 deletes its RayServeDeployment.
        only_hello = edited.split("  - name: auto")[0]
        await kube.patch(RAYSERVICES, "rs", {"spec": {"serveConfigV2": only_hello}}, ns, patch_type="merge")

        async def auto_gone() -> bool:
            return await rsd(kube, ns, "rs-auto-scaled") is None

        await eventually(auto_gone, T, 0.2, what="rs-auto-scaled deleted with its application")


async def test_the_webhook_refuses_a_scale_write_serves_autoscaler_would_ignore(
    plane: ControlPlane, kube: ApiClient, namespace: str, fleet: FakeFleet
) -> None:
    ns = namespace
    token = uuid.uuid4().hex[:10]
    await kube.patch(NAMESPACES, ns, {"metadata": {"labels": {"rayop.test/webhook": token}}})
    async with serving_kubelet(kube, ns), operator(kube, ns, fleet) as mgr:
        await kube.create(RAYSERVICES, rayservice("rs", ns, serveConfigV2=SERVE))

        async def made() -> bool:
            obj = await rsd(kube, ns, "rs-auto-scaled")
            return bool(obj and (obj.get("status") or {}).get("scaledBy") == SD.SCALED_BY_SERVE_AUTOSCALER)

        await eventually(made, T, 0.2, what="rs-auto-scaled sized by Serve's autoscaler")
        # As in the operator: the informers first, a GET as the operator on a miss (a scale request for an
        # object the cache has not seen yet). The GET path, on its own:
        ctx = await serve_deployment_scale_context(ApiObjects(mgr.client), ns, "rs-auto-scaled")
        assert not ctx.unreadable and ctx.target is not None and ctx.owner is not None, ctx
        assert name_of(ctx.owner) == "rs"
        objects = CachedObjects(
            {RAYSERVICES: mgr.informer(RAYSERVICES), RAYSERVEDEPLOYMENTS: mgr.informer(RAYSERVEDEPLOYMENTS)},
            ApiObjects(mgr.client),
        )
        server = WebhookServer(
            "127.0.0.1", 0, cert_source=SelfSignedCertSource(["127.0.0.1"]), objects=objects
        )
        await server.start()
        name = f"rayop-rsd-scale-test-{token}"
        try:
            await server.register(
                kube, name=name, namespace_selector={"matchLabels": {"rayop.test/webhook": token}}
            )

            async def refused() -> str:
                code, _, err = await kubectl(plane, "-n", ns, "scale", "rsd/rs-auto-scaled", "--replicas=3")
                return err if code != 0 and "Serve's own autoscaler sizes" in err else ""

            err = await eventually(refused, 30, 0.5, what="the webhook refusing the scale write")
            assert 'The RayServeDeployment "rs-auto-scaled" is invalid: spec.replicas: Forbidden' in err
            assert "serveConfigV2 sets autoscaling_config" in err
            with pytest.raises(ApiError) as e:
                await set_scale(kube, ns, "rs-auto-scaled", 4)
            assert e.value.status == 422
            # The other deployment is a scale target like any: kubectl scale works, and 0 is refused.
            code, _, err = await kubectl(plane, "-n", ns, "scale", "rsd/rs-hello-model", "--replicas=2")
            assert code == 0, err
            code, _, err = await kubectl(plane, "-n", ns, "scale", "rsd/rs-hello-model", "--replicas=0")
            # The CRD's schema (minimum 1) refuses it before the webhook is asked.
            assert code != 0 and "spec.replicas" in err and "greater than or equal to 1" in err, err
            code, out, err = await kubectl(plane, "-n", ns, "get", "rsd")
            assert code == 0 and "ServeAutoscaler" in out and "ScaleTarget" in out, out + err
        finally:
            await delete_webhook_configuration(kube, name)
            await server.stop()
