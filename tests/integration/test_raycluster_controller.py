"""The RayCluster controller against a real kube-apiserver + kube-controller-manager
(docs/compatibility.md#raycluster-reconcile).

The operator runs in-process on the runtime Manager, watching the test's namespace. Pods are made
Running/Ready by the test through the status subresource, as KubeRay's envtest suite does.
"""

from __future__ import annotations

from typing import Any

from rayop.api import constants as C
from rayop.runtime.client import (
    EVENTS,
    JOBS,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    ApiClient,
    load_kubeconfig,
)
from tests.helpers import eventually
from tests.integration.events import event_reasons, wait_event
from tests.integration.rayclusters import (
    RAYCLUSTERS,
    condition,
    fake_kubelet,
    mark_ready,
    operator,
    pods_of,
    raycluster,
    running_ready_status,
    set_pod_status,
)

T = 60.0


async def get_rc(kube: ApiClient, ns: str, name: str) -> dict[str, Any]:
    return await kube.get(RAYCLUSTERS, name, ns)


async def count(kube: ApiClient, ns: str, name: str, node_type: str) -> int:
    return len(await pods_of(kube, ns, name, node_type))


async def json_patch(kube: ApiClient, ns: str, name: str, ops: list[dict[str, Any]]) -> None:
    await kube.patch(RAYCLUSTERS, name, ops, ns, patch_type="json")


async def test_create_pods_services_and_ready_status(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("demo", ns, replicas=3))
        await eventually(lambda: _eq(count(kube, ns, "demo", "head"), 1), T, what="head pod")
        await eventually(lambda: _eq(count(kube, ns, "demo", "worker"), 3), T, what="3 workers")
        svc = await eventually(
            lambda: kube.get_or_none(SERVICES, "demo-head-svc", ns), T, what="head service"
        )
        assert svc["spec"]["clusterIP"] == "None"  # headless by default
        assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
        head = (await pods_of(kube, ns, "demo", "head"))[0]
        assert head["metadata"]["labels"][C.LABEL_NODE_TYPE] == "head"
        assert head["metadata"]["ownerReferences"][0]["name"] == "demo"

        await mark_ready(kube, ns, "demo")

        async def ready() -> bool:
            rc = await get_rc(kube, ns, "demo")
            st = rc.get("status") or {}
            prov = condition(rc, C.COND_PROVISIONED)
            hr = condition(rc, C.COND_HEAD_POD_READY)
            return bool(
                st.get("state") == "ready"
                and st.get("readyWorkerReplicas") == 3
                and prov
                and prov["status"] == "True"
                and hr
                and hr["status"] == "True"
                and st.get("observedGeneration") == rc["metadata"]["generation"]
            )

        await eventually(ready, T, what="status ready with conditions")
        rc = await get_rc(kube, ns, "demo")
        assert rc["status"]["desiredWorkerReplicas"] == 3
        assert rc["status"]["head"]["serviceName"] == "demo-head-svc"
        await wait_event(kube, ns, "demo", C.EV_CREATED_HEAD_POD)


async def test_deleted_worker_is_recreated(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("rc", ns, replicas=2))
        await eventually(lambda: _eq(count(kube, ns, "rc", "worker"), 2), T, what="2 workers")
        victim = (await pods_of(kube, ns, "rc", "worker"))[0]["metadata"]["name"]
        await kube.delete(PODS, victim, ns)

        async def replaced() -> bool:
            names = [p["metadata"]["name"] for p in await pods_of(kube, ns, "rc", "worker")]
            return len(names) == 2 and victim not in names

        await eventually(replaced, T, what="worker recreated")


async def test_replicas_up_and_down_without_autoscaling(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("rc", ns, replicas=1))
        await eventually(lambda: _eq(count(kube, ns, "rc", "worker"), 1), T, what="1 worker")
        await json_patch(
            kube, ns, "rc", [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 5}]
        )
        await eventually(lambda: _eq(count(kube, ns, "rc", "worker"), 5), T, what="5 workers")
        await json_patch(
            kube, ns, "rc", [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}]
        )
        await eventually(lambda: _eq(count(kube, ns, "rc", "worker"), 2), T, what="2 workers")
        # Above maxReplicas: clamped.
        await json_patch(
            kube, ns, "rc", [{"op": "replace", "path": "/spec/workerGroupSpecs/0/maxReplicas", "value": 3}]
        )
        await json_patch(
            kube, ns, "rc", [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 10}]
        )
        await eventually(lambda: _eq(count(kube, ns, "rc", "worker"), 3), T, what="clamped to 3")


async def test_autoscaler_patches_delete_exactly_the_named_pods(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns), fake_kubelet(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("auto", ns, replicas=4, enableInTreeAutoscaling=True))
        await eventually(lambda: _eq(count(kube, ns, "auto", "worker"), 4), T, what="4 workers")
        for res, name in ((SERVICEACCOUNTS, "auto"), (ROLES, "auto"), (ROLEBINDINGS, "auto")):
            await eventually(
                lambda r=res, n=name: kube.get_or_none(r, n, ns), T, what=f"autoscaler {res.kind}"
            )
        head = (await pods_of(kube, ns, "auto", "head"))[0]
        assert [c["name"] for c in head["spec"]["containers"]] == ["ray-head", "autoscaler"]

        names = sorted(p["metadata"]["name"] for p in await pods_of(kube, ns, "auto", "worker"))
        # Lowering replicas alone deletes nothing: the autoscaler is the only decider.
        await json_patch(
            kube, ns, "auto", [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}]
        )
        await eventually(
            lambda: _has_status(kube, ns, "auto", "desiredWorkerReplicas", 2), T, what="status saw replicas=2"
        )
        assert sorted(p["metadata"]["name"] for p in await pods_of(kube, ns, "auto", "worker")) == names

        # Exactly what Ray's autoscaler sends (docs/compatibility.md#ray-autoscaler): one PATCH, `replace` ops.
        doomed = [names[1], names[3]]
        await json_patch(
            kube,
            ns,
            "auto",
            [
                {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2},
                {
                    "op": "replace",
                    "path": "/spec/workerGroupSpecs/0/scaleStrategy",
                    "value": {"workersToDelete": doomed},
                },
            ],
        )

        async def exactly_named_gone() -> bool:
            left = sorted(p["metadata"]["name"] for p in await pods_of(kube, ns, "auto", "worker"))
            return left == [names[0], names[2]]

        await eventually(exactly_named_gone, T, what="the two named workers deleted, the others kept")
        # The operator does not clear workersToDelete: Ray's autoscaler owns it.
        rc = await get_rc(kube, ns, "auto")
        assert rc["spec"]["workerGroupSpecs"][0]["scaleStrategy"]["workersToDelete"] == doomed
        # The autoscaler clears the list, then scales up.
        await json_patch(
            kube,
            ns,
            "auto",
            [
                {
                    "op": "replace",
                    "path": "/spec/workerGroupSpecs/0/scaleStrategy",
                    "value": {"workersToDelete": []},
                },
                {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
            ],
        )
        await eventually(lambda: _eq(count(kube, ns, "auto", "worker"), 3), T, what="scale up to 3")
        left = {p["metadata"]["name"] for p in await pods_of(kube, ns, "auto", "worker")}
        assert {names[0], names[2]} <= left


async def test_suspend_and_resume(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("sus", ns, replicas=2))
        await eventually(lambda: _eq(count(kube, ns, "sus", "worker"), 2), T, what="2 workers")
        await kube.patch(RAYCLUSTERS, "sus", {"spec": {"suspend": True}}, ns)

        async def suspended() -> bool:
            rc = await get_rc(kube, ns, "sus")
            c = condition(rc, C.COND_SUSPENDED)
            pods = await pods_of(kube, ns, "sus")
            return bool(
                c
                and c["status"] == "True"
                and not pods
                and (rc.get("status") or {}).get("state") == "suspended"
            )

        await eventually(suspended, T, what="suspended with no pods")
        await wait_event(kube, ns, "sus", C.EV_DELETED_POD)
        await kube.patch(RAYCLUSTERS, "sus", {"spec": {"suspend": False}}, ns)
        await eventually(lambda: _eq(count(kube, ns, "sus", "worker"), 2), T, what="resumed workers")
        await eventually(lambda: _eq(count(kube, ns, "sus", "head"), 1), T, what="resumed head")
        rc = await get_rc(kube, ns, "sus")
        c = condition(rc, C.COND_SUSPENDED)
        assert c is not None and c["status"] == "False"


async def test_owner_garbage_collection(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        await kube.create(RAYCLUSTERS, raycluster("gc", ns, replicas=2))
        await eventually(lambda: _eq(count(kube, ns, "gc", "worker"), 2), T, what="workers")
        await eventually(lambda: kube.get_or_none(SERVICES, "gc-head-svc", ns), T, what="head service")
        await kube.delete(RAYCLUSTERS, "gc", ns, propagation="Background")

        async def gone() -> bool:
            pods = (await kube.list(PODS, ns, label_selector=f"{C.LABEL_CLUSTER}=gc"))["items"]
            svc = await kube.get_or_none(SERVICES, "gc-head-svc", ns)
            return not pods and svc is None

        await eventually(gone, T, what="pods and services garbage-collected")


async def test_gcs_ft_deletion_runs_cleanup_job_and_removes_finalizer(
    kube: ApiClient, namespace: str
) -> None:
    ns = namespace
    async with operator(kube, ns):
        rc = raycluster("ft", ns, replicas=1, gcsFaultToleranceOptions={"redisAddress": "redis:6379"})
        await kube.create(RAYCLUSTERS, rc)

        async def has_finalizer() -> bool:
            got = await get_rc(kube, ns, "ft")
            return C.FINALIZER_GCS_FT_REDIS_CLEANUP in (got["metadata"].get("finalizers") or [])

        await eventually(has_finalizer, T, what="redis cleanup finalizer")
        await eventually(lambda: _eq(count(kube, ns, "ft", "head"), 1), T, what="head pod")
        head = (await pods_of(kube, ns, "ft", "head"))[0]
        assert any(e["name"] == C.ENV_REDIS_ADDRESS for e in head["spec"]["containers"][0].get("env", []))

        await kube.delete(RAYCLUSTERS, "ft", ns)
        job = await eventually(
            lambda: kube.get_or_none(JOBS, "ft-redis-cleanup", ns), T, what="redis cleanup Job"
        )
        assert job["metadata"]["labels"][C.LABEL_NODE_TYPE] == C.NODE_TYPE_REDIS_CLEANUP
        assert await get_rc(kube, ns, "ft")  # still there: the finalizer waits for the Job
        # No kubelet runs the Job's pod: finish it the way a kubelet would, and let the Job controller
        # mark the Job Complete.
        jpod = await eventually(
            lambda: _first(kube.list(PODS, ns, label_selector="job-name=ft-redis-cleanup")), T, what="job pod"
        )
        status = running_ready_status(jpod)
        status["phase"] = "Succeeded"
        status["conditions"] = [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
        for cs in status["containerStatuses"]:
            cs["ready"] = False
            cs["started"] = False
            cs["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": "2026-01-01T00:00:00Z",
                    "finishedAt": "2026-01-01T00:00:01Z",
                }
            }
        await set_pod_status(kube, jpod, status)
        await eventually(lambda: _is_none(kube.get_or_none(RAYCLUSTERS, "ft", ns)), T, what="RayCluster gone")
        await wait_event(kube, ns, "ft", C.EV_CREATED_REDIS_CLEANUP_JOB)


async def test_gcs_ft_finalizer_force_removed_after_timeout(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns):
        rc = raycluster("stuck", ns, replicas=0, gcsFaultToleranceOptions={"redisAddress": "redis:6379"})
        rc["metadata"]["annotations"] = {C.ANN_GCS_FT_DELETION_TIMEOUT: "3"}
        await kube.create(RAYCLUSTERS, rc)
        await eventually(lambda: _eq(count(kube, ns, "stuck", "head"), 1), T, what="head pod")
        await kube.delete(RAYCLUSTERS, "stuck", ns)
        await eventually(
            lambda: _is_none(kube.get_or_none(RAYCLUSTERS, "stuck", ns)), T, what="force-removed"
        )
        await wait_event(kube, ns, "stuck", C.EV_FORCE_DELETED_STUCK_CLUSTER)


# -- bad input (no webhook) ------------------------------------------------------------------------


async def test_rule_invalid_cluster_gets_event_and_reason_while_others_reconcile(
    kube: ApiClient, namespace: str
) -> None:
    ns = namespace
    async with operator(kube, ns):
        bad = raycluster("bad", ns, replicas=1)
        # Schema-valid, rule-invalid: two worker groups with the same name (webhook rule; the controller
        # must still refuse it when the webhook is off).
        bad["spec"]["workerGroupSpecs"].append(dict(bad["spec"]["workerGroupSpecs"][0]))
        await kube.create(RAYCLUSTERS, bad)
        await kube.create(RAYCLUSTERS, raycluster("good", ns, replicas=2))

        async def reported() -> bool:
            rc = await get_rc(kube, ns, "bad")
            reason = (rc.get("status") or {}).get("reason") or ""
            return C.EV_INVALID_SPEC in await event_reasons(kube, ns, "bad") and C.EV_INVALID_SPEC in reason

        await eventually(reported, T, what="Warning event and status reason on the bad cluster")
        await eventually(lambda: _eq(count(kube, ns, "good", "worker"), 2), T, what="good cluster reconciled")
        assert await pods_of(kube, ns, "bad") == []
        evs = [
            e
            for e in (await kube.list(EVENTS, ns))["items"]
            if (e.get("regarding") or {}).get("name") == "bad"
        ]
        assert all(e["type"] == "Warning" for e in evs)


async def test_malformed_pod_template_never_crashes_the_operator(kube: ApiClient, namespace: str) -> None:
    ns = namespace
    async with operator(kube, ns) as mgr:
        bad = raycluster("weird", ns, replicas=1)
        # Matches the schema's quantity pattern, but no quantity parser can represent it.
        bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"cpu": "1e400", "memory": "1Gi"}
        }
        # And a container name that is not a DNS label: the schema does not check it, the Pod API does.
        bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"] = "Ray_Head"
        await kube.create(RAYCLUSTERS, bad)
        await kube.create(RAYCLUSTERS, raycluster("fine", ns, replicas=2))
        await eventually(
            lambda: _eq(count(kube, ns, "fine", "worker"), 2), T, what="other cluster reconciled"
        )

        async def reported() -> bool:
            return any(
                r.startswith(("Invalid", "FailedToCreate")) for r in await event_reasons(kube, ns, "weird")
            )

        await eventually(reported, T, what="a Warning on the malformed cluster")
        assert not mgr._stop.is_set()  # the manager is still running
        # It keeps serving new work.
        await kube.create(RAYCLUSTERS, raycluster("after", ns, replicas=1))
        await eventually(
            lambda: _eq(count(kube, ns, "after", "worker"), 1), T, what="new cluster after the bad one"
        )


# -- small async helpers ---------------------------------------------------------------------------


async def _eq(aw: Any, want: Any) -> bool:
    return bool(await aw == want)


async def _is_none(aw: Any) -> bool:
    return await aw is None


async def _first(aw: Any) -> Any:
    items = (await aw)["items"]
    return items[0] if items else None


async def _has_status(kube: ApiClient, ns: str, name: str, field: str, want: Any) -> bool:
    rc = await get_rc(kube, ns, name)
    return bool((rc.get("status") or {}).get(field) == want)


async def test_a_large_scale_up_does_not_hold_up_other_clusters(
    plane: Any, kube: ApiClient, namespace: str
) -> None:
    ns = namespace
    # One worker only and a slow client: without batching, the big cluster's 150 creations and their
    # Events (about 6 s at 50 requests/s) would hold the only worker until they were all done.
    cfg = load_kubeconfig(plane.kubeconfig)
    cfg.qps, cfg.burst = 50.0, 10
    slow = ApiClient(cfg)
    try:
        async with operator(slow, ns, reconcile_concurrency=1, pod_batch=50):
            await kube.create(RAYCLUSTERS, raycluster("big", ns, replicas=150))
            await eventually(
                lambda: _at_least(count(kube, ns, "big", "worker"), 1), T, what="big scale-up started"
            )
            await kube.create(RAYCLUSTERS, raycluster("small", ns, replicas=1))
            await eventually(
                lambda: _eq(count(kube, ns, "small", "worker"), 1), T, what="small cluster served"
            )
            assert await count(kube, ns, "big", "worker") < 150, "the small cluster waited for the big one"
            await eventually(
                lambda: _eq(count(kube, ns, "big", "worker"), 150), 120, what="big cluster completes"
            )
    finally:
        await slow.close()


async def _at_least(aw: Any, n: int) -> bool:
    return bool(await aw >= n)
