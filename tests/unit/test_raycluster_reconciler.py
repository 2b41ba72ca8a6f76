"""The RayCluster reconciler's step order and decisions, against an in-memory API and lagging caches.

The builders are replaced by tiny fakes here: this tests the reconciler's logic (what it creates, deletes,
waits for, and reports), not the shape of the manifests (that is the builders' golden tests).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.controllers.raycluster import RayClusterBuilders, RayClusterReconciler, Store
from rayop.controllers.settings import RayClusterSettings
from rayop.runtime.client import (
    JOBS,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiError,
)
from rayop.runtime.expectations import Expectations
from tests.unit.fakekube import FakeInformer, FakeKube, FakeRecorder

NS = "ns"


def _labels(rc: dict[str, Any], node_type: str, group: str) -> dict[str, str]:
    return {C.LABEL_CLUSTER: rc["metadata"]["name"], C.LABEL_NODE_TYPE: node_type, C.LABEL_GROUP: group}


def build_head_pod(rc: dict[str, Any], opts: Any) -> dict[str, Any]:
    tmpl = rc["spec"]["headGroupSpec"]["template"]
    containers = tmpl["spec"]["containers"]
    if not isinstance(containers, list):
        raise TypeError("containers must be a list")
    return {
        "metadata": {
            "generateName": f"{rc['metadata']['name']}-head-",
            "labels": _labels(rc, "head", "headgroup"),
            "annotations": {
                C.ANN_UPGRADE_RECREATE_HASH: upgrade_hash(rc["spec"]),
                C.ANN_KUBERAY_VERSION: C.KUBERAY_VERSION,
            },
        },
        "spec": {"containers": copy.deepcopy(containers)},
    }


def build_worker_pod(
    rc: dict[str, Any],
    group: dict[str, Any],
    opts: Any,
    *,
    replica_index: int | None = None,
    replica_name: str | None = None,
    host_index: int | None = None,
) -> dict[str, Any]:
    labels = _labels(rc, "worker", group["groupName"])
    if replica_index is not None:
        labels[C.LABEL_WORKER_GROUP_REPLICA_INDEX] = str(replica_index)
    if replica_name is not None:
        labels[C.LABEL_WORKER_GROUP_REPLICA_NAME] = replica_name
        labels[C.LABEL_REPLICA_HOST_INDEX] = str(host_index)
    return {
        "metadata": {
            "generateName": f"{rc['metadata']['name']}-{group['groupName']}-worker-",
            "labels": labels,
        },
        "spec": {"containers": copy.deepcopy(group["template"]["spec"]["containers"])},
    }


def upgrade_hash(spec: dict[str, Any]) -> str:
    return str(sorted(c.get("image", "") for c in spec["headGroupSpec"]["template"]["spec"]["containers"]))


def desired(group: dict[str, Any]) -> int:
    if group.get("suspend"):
        return 0
    r = group.get("replicas", group.get("minReplicas", 0))
    r = max(group.get("minReplicas", 0), min(group.get("maxReplicas", 2**31 - 1), r))
    return int(r) * max(1, int(group.get("numOfHosts") or 1))


def should_delete_pod(pod: dict[str, Any], ray_container: str) -> tuple[bool, str]:
    phase = (pod.get("status") or {}).get("phase")
    return (phase in ("Failed", "Succeeded"), f"phase {phase}")


def calculate_status(
    rc: dict[str, Any],
    pods: list[dict[str, Any]],
    head_service: Any,
    *,
    reconcile_error: Any,
    now: Any,
    gates: Any,
) -> dict[str, Any]:
    st = copy.deepcopy(rc.get("status") or {})
    st["observedGeneration"] = rc["metadata"].get("generation")
    ready = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    total = 1 + sum(desired(g) for g in rc["spec"].get("workerGroupSpecs") or [])
    if reconcile_error is None and len(pods) == total and len(ready) == total:
        st["state"] = "ready"
    st["reason"] = getattr(reconcile_error, "reason", "") if reconcile_error else st.get("reason", "")
    conds = [c for c in st.get("conditions") or [] if c["type"] not in (C.COND_SUSPENDING, C.COND_SUSPENDED)]
    if rc["spec"].get("suspend"):
        if pods:
            conds.append({"type": C.COND_SUSPENDING, "status": "True"})
        else:
            conds.append({"type": C.COND_SUSPENDED, "status": "True"})
            st["state"] = "suspended"
    st["conditions"] = conds
    st["pods"] = len(pods)
    st["readyWorkerReplicas"] = sum(
        1 for p in ready if p["metadata"]["labels"][C.LABEL_NODE_TYPE] == "worker"
    )
    return st


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return old != new


def _owned_meta(rc: dict[str, Any]) -> dict[str, Any]:
    """Metadata of a child named after the cluster, labelled as the real builders label it."""
    return {"metadata": {"name": rc["metadata"]["name"], "labels": {C.LABEL_CLUSTER: rc["metadata"]["name"]}}}


def fake_builders() -> RayClusterBuilders:
    return RayClusterBuilders(
        head_pod=build_head_pod,
        worker_pod=build_worker_pod,
        head_service=lambda rc, opts: {
            "metadata": {
                "name": f"{rc['metadata']['name']}-head-svc",
                "labels": _labels(rc, "head", "headgroup"),
            },
            "spec": {"ports": [{"name": "gcs", "port": 6379}]},
        },
        headless_worker_service=lambda rc: {
            "metadata": {
                "name": f"{rc['metadata']['name']}-headless",
                "labels": {C.LABEL_CLUSTER: rc["metadata"]["name"]},
            },
            "spec": {"clusterIP": "None"},
        },
        serve_service=lambda rc: {
            "metadata": {"name": f"{rc['metadata']['name']}-serve-svc"},
            "spec": {},
        },
        service_account=_owned_meta,
        role=_owned_meta,
        role_binding=_owned_meta,
        ingress=lambda rc: {
            "metadata": {"name": f"{rc['metadata']['name']}-head-ingress"},
            "spec": {},
        },
        gcs_pvc=lambda rc: {"metadata": {"name": f"{rc['metadata']['name']}-gcs-pvc"}, "spec": {}},
        needs_auth_secret=lambda rc: (rc["spec"].get("authOptions") or {}).get("mode") == "token",
        auth_secret=lambda rc, token: {**_owned_meta(rc), "stringData": {"auth_token": token}},
        redis_cleanup_job=lambda rc, head: {
            "metadata": {
                "name": f"{rc['metadata']['name']}-redis-cleanup",
                "labels": {
                    C.LABEL_CLUSTER: rc["metadata"]["name"],
                    C.LABEL_NODE_TYPE: C.NODE_TYPE_REDIS_CLEANUP,
                },
            },
            "spec": {},
        },
        calculate_status=calculate_status,
        status_changed=status_changed,
        desired_worker_replicas=desired,
        upgrade_recreate_hash=upgrade_hash,
        should_delete_pod=should_delete_pod,
    )


def validate(obj: dict[str, Any], *, gates: Any, old: Any = None) -> list[str]:
    errs = []
    for i, g in enumerate(obj["spec"].get("workerGroupSpecs") or []):
        if g.get("minReplicas", 0) > g.get("maxReplicas", 2**31 - 1):
            errs.append(
                f"spec.workerGroupSpecs[{i}].minReplicas: Invalid value: {g['minReplicas']}: must be <= maxReplicas"
            )
    return errs


def raycluster(name: str = "rc", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "image": "ray:1"}]}}},
        "workerGroupSpecs": [
            {
                "groupName": "g",
                "replicas": replicas,
                "minReplicas": 0,
                "maxReplicas": 1000,
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "ray:1"}]}},
            }
        ],
    }
    s.update(spec)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": s,
    }


class Env:
    def __init__(
        self,
        *,
        live: bool = True,
        live_services: bool = True,
        live_clusters: bool = True,
        cached_children: bool = False,
        **cfg: Any,
    ) -> None:
        self.kube = FakeKube()
        self.clusters = FakeInformer(self.kube, RAYCLUSTERS, live=live_clusters)
        self.pods = FakeInformer(self.kube, PODS, live=live)
        self.services = FakeInformer(self.kube, SERVICES, live=live_services)
        self.children = (
            {
                r: FakeInformer(self.kube, r, has_label=C.LABEL_CLUSTER)
                for r in (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, SECRETS)
            }
            if cached_children
            else {}
        )
        self.recorder = FakeRecorder()
        self.now = 1_000_000.0
        self.r = RayClusterReconciler(
            self.kube,  # type: ignore[arg-type]
            Store(self.clusters, self.pods, self.services, self.children),
            self.recorder,
            replace(RayClusterSettings.from_env(cfg.pop("environ", {})), **cfg),
            builders=fake_builders(),
            validate=validate,
            now=lambda: self.now,
            expectations=Expectations(clock=lambda: self.now),
        )

    def add(self, rc: dict[str, Any]) -> dict[str, Any]:
        return self.kube.put(RAYCLUSTERS, rc)

    def rc(self, name: str = "rc") -> dict[str, Any]:
        return self.kube._kind(RAYCLUSTERS)[(NS, name)]

    async def reconcile(self, name: str = "rc") -> Any:
        return await self.r.reconcile((NS, name))

    def workers(self, name: str = "rc") -> list[str]:
        return self.kube.names(PODS, **{C.LABEL_CLUSTER: name, C.LABEL_NODE_TYPE: "worker"})

    def heads(self, name: str = "rc") -> list[str]:
        return self.kube.names(PODS, **{C.LABEL_CLUSTER: name, C.LABEL_NODE_TYPE: "head"})

    def set_phase(self, phase: str = "Running") -> None:
        for p in self.kube._kind(PODS).values():
            p["status"] = {"phase": phase}


async def test_creates_head_service_and_pods_then_becomes_ready() -> None:
    env = Env()
    env.add(raycluster(replicas=3))
    res = await env.reconcile()
    assert len(env.heads()) == 1 and len(env.workers()) == 3
    assert env.kube.names(SERVICES) == ["rc-head-svc"]
    assert res.requeue_after == 2.0  # status changed
    pod = next(iter(env.kube._kind(PODS).values()))
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
    assert env.recorder.reasons().count(C.EV_CREATED_WORKER_POD) == 1  # one Event per batch
    assert "3 worker Pods" in next(e[3] for e in env.recorder.events if e[1] == C.EV_CREATED_WORKER_POD)
    env.set_phase("Running")
    await env.reconcile()
    assert env.rc()["status"]["state"] == "ready"
    res = await env.reconcile()
    assert res.requeue_after == 300.0  # nothing changed: KubeRay's unconditional requeue


async def test_requeue_seconds_from_env() -> None:
    env = Env(environ={C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS: "10"})
    env.add(raycluster(replicas=0))
    await env.reconcile()
    assert (await env.reconcile()).requeue_after == 10.0


async def test_lagging_cache_never_double_creates() -> None:
    env = Env(live=False)
    env.add(raycluster(replicas=4))
    await env.reconcile()
    assert len(env.workers()) == 4
    for _ in range(3):  # the cache still shows nothing
        await env.reconcile()
    assert len(env.workers()) == 4 and len(env.heads()) == 1
    env.pods.sync()
    await env.reconcile()
    assert len(env.workers()) == 4


async def test_status_waits_for_the_cache_to_show_the_created_head_service() -> None:
    env = Env(live_services=False)
    env.add(raycluster(replicas=2))
    await env.reconcile()
    assert env.kube.names(SERVICES) == ["rc-head-svc"]
    res = await env.reconcile()
    assert "status" not in env.rc(), "the head Service is not in the cache yet: no status to write"
    assert res.requeue_after == 1.0
    env.services.sync()
    await env.reconcile()
    assert env.rc()["status"]["pods"] == 3


async def test_status_is_written_anyway_once_the_created_service_is_overdue() -> None:
    env = Env(live_services=False)
    env.add(raycluster(replicas=1))
    await env.reconcile()
    await env.reconcile()
    assert "status" not in env.rc()
    env.now += 31  # past the expectation timeout: a cache that never shows it must not stall the status
    await env.reconcile()
    assert "status" in env.rc()


async def test_status_builds_on_our_last_write_while_the_cache_misses_it() -> None:
    env = Env(live_clusters=False)
    attempts: list[str] = []
    real = env.kube.replace_status

    async def counting(res: Any, obj: dict[str, Any]) -> dict[str, Any]:
        attempts.append(obj["metadata"]["resourceVersion"])
        return await real(res, obj)

    env.kube.replace_status = counting  # type: ignore[method-assign]
    env.add(raycluster(replicas=1))
    env.clusters.sync()
    await env.reconcile()
    await env.reconcile()
    assert len(attempts) == 1
    env.set_phase("Running")
    await env.reconcile()
    # The cache still shows the version our first write replaced. The second write builds on the object
    # that write returned: not a sure 409, and no wait for the watch event of our own write.
    assert len(attempts) == 2 and attempts[1] != attempts[0]
    assert env.rc()["status"]["state"] == "ready"
    env.clusters.sync()
    await env.reconcile()
    assert len(attempts) == 2, "nothing changed since"


async def test_status_changes_other_than_state_are_written_at_most_once_per_interval() -> None:
    env = Env()
    env.add(raycluster(replicas=2))
    await env.reconcile()
    await env.reconcile()
    written = env.rc()["metadata"]["resourceVersion"]
    assert env.rc()["status"].get("readyWorkerReplicas", 0) == 0
    worker = env.workers()[0]
    env.kube._kind(PODS)[(NS, worker)]["status"] = {"phase": "Running"}
    res = await env.reconcile()
    # One worker is ready, the state is unchanged: the write waits for the rest of the interval.
    assert env.rc()["metadata"]["resourceVersion"] == written
    assert 0 < res.requeue_after <= 1.0
    env.now += 1.0
    await env.reconcile()
    assert env.rc()["metadata"]["resourceVersion"] != written
    assert env.rc()["status"]["readyWorkerReplicas"] == 1
    written = env.rc()["metadata"]["resourceVersion"]
    # The next progress waits twice as long: a slow start makes a few writes, not one per Pod.
    env.kube._kind(PODS)[(NS, env.workers()[1])]["status"] = {"phase": "Running"}
    res = await env.reconcile()
    assert env.rc()["metadata"]["resourceVersion"] == written
    assert 1.0 < res.requeue_after <= 2.0
    env.set_phase("Running")  # all ready: a change of state is written at once
    await env.reconcile()
    assert env.rc()["status"]["state"] == "ready"
    assert env.rc()["metadata"]["resourceVersion"] != written


async def test_deleted_worker_is_recreated_and_failed_worker_replaced() -> None:
    env = Env()
    env.add(raycluster(replicas=2))
    await env.reconcile()
    await env.reconcile()  # the watch event of the new pods: expectations met
    first = env.workers()
    await env.kube.delete(PODS, first[0], NS)
    await env.reconcile()
    assert len(env.workers()) == 2 and first[0] not in env.workers()
    failed = env.workers()[0]
    env.kube._kind(PODS)[(NS, failed)]["status"] = {"phase": "Failed"}
    await env.reconcile()  # deletes the failed pod, creates nothing in the same pass
    assert failed not in env.workers() and len(env.workers()) == 1
    assert env.rc()["status"]["reason"] == ""  # not a ReplicaFailure reason, as in KubeRay
    await env.reconcile()
    assert len(env.workers()) == 2


async def test_scale_down_without_autoscaler_deletes_and_with_autoscaler_waits_for_workers_to_delete() -> (
    None
):
    env = Env()
    env.add(raycluster(replicas=3))
    await env.reconcile()
    env.rc()["spec"]["workerGroupSpecs"][0]["replicas"] = 1
    await env.reconcile()
    assert len(env.workers()) == 1

    env2 = Env()
    env2.add(raycluster(replicas=3, enableInTreeAutoscaling=True))
    await env2.reconcile()
    names = env2.workers()
    env2.rc()["spec"]["workerGroupSpecs"][0]["replicas"] = 1
    await env2.reconcile()
    assert env2.workers() == names  # the autoscaler decides which pods go
    env2.rc()["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": names[:2]}
    await env2.reconcile()
    assert env2.workers() == names[2:]
    assert sorted(c for c in env2.kube.calls if c[0] == "delete") == [
        ("delete", "pods", n) for n in names[:2]
    ]
    # The operator never writes the spec: the list stays until the autoscaler clears it.
    assert env2.rc()["spec"]["workerGroupSpecs"][0]["scaleStrategy"]["workersToDelete"] == names[:2]
    await env2.reconcile()
    assert env2.workers() == names[2:]
    assert all(c[0] != "replace" for c in env2.kube.calls)


async def test_large_scale_up_is_batched_and_requeued_soon() -> None:
    env = Env(pod_batch=50)
    env.add(raycluster(replicas=120))
    res = await env.reconcile()
    assert len(env.workers()) == 50
    assert res.requeue_after is not None and res.requeue_after <= 2.0
    await env.reconcile()
    await env.reconcile()
    assert len(env.workers()) == 120
    idx = sorted(
        int(p["metadata"]["labels"][C.LABEL_WORKER_GROUP_REPLICA_INDEX])
        for p in env.kube._kind(PODS).values()
        if p["metadata"]["labels"][C.LABEL_NODE_TYPE] == "worker"
    )
    assert idx == list(range(120))


async def test_suspend_is_atomic_via_conditions() -> None:
    env = Env()
    env.add(raycluster(replicas=2))
    await env.reconcile()
    env.rc()["spec"]["suspend"] = True
    await env.reconcile()  # status moves to Suspending first; no pods deleted yet
    assert len(env.workers()) == 2
    assert any(c["type"] == C.COND_SUSPENDING for c in env.rc()["status"]["conditions"])
    await env.reconcile()  # now deletes all pods
    assert env.workers() == [] and env.heads() == []
    assert ("deletecollection", "pods", f"{C.LABEL_CLUSTER}=rc") in env.kube.calls
    assert C.EV_DELETED_POD in env.recorder.reasons()
    await env.reconcile()
    assert env.rc()["status"]["state"] == "suspended"
    env.rc()["spec"]["suspend"] = False
    env.rc()["status"]["conditions"] = []
    await env.reconcile()
    assert len(env.workers()) == 2


async def test_invalid_spec_gets_warning_event_and_status_reason_and_no_pods() -> None:
    env = Env()
    env.add(
        raycluster(
            workerGroupSpecs=[
                {
                    "groupName": "g",
                    "minReplicas": 5,
                    "maxReplicas": 1,
                    "template": {"spec": {"containers": [{"name": "w"}]}},
                }
            ]
        )
    )
    res = await env.reconcile()
    assert res.requeue_after is None
    assert env.kube._kind(PODS) == {}
    assert env.recorder.events[0][:2] == ("Warning", C.EV_INVALID_SPEC)
    assert "minReplicas" in env.rc()["status"]["reason"]


async def test_rules_run_again_only_when_metadata_or_spec_change() -> None:
    env = Env()
    calls: list[int] = []

    def counting(obj: dict[str, Any], *, gates: Any, old: Any = None) -> list[str]:
        calls.append(1)
        return validate(obj, gates=gates, old=old)

    env.r.validate = counting
    bad = raycluster(replicas=1)
    bad["spec"]["workerGroupSpecs"][0]["minReplicas"] = 5
    bad["spec"]["workerGroupSpecs"][0]["maxReplicas"] = 1
    env.add(bad)
    await env.reconcile()
    await env.reconcile()  # its status (and resourceVersion) changed, its spec did not
    assert len(calls) == 1
    assert env.kube._kind(PODS) == {}
    fixed = copy.deepcopy(env.rc())
    fixed["spec"]["workerGroupSpecs"][0]["maxReplicas"] = 10
    env.add(fixed)
    await env.reconcile()
    assert len(calls) == 2
    assert env.heads() and len(env.workers()) == 5  # replicas 1 clamped up to minReplicas 5
    labelled = copy.deepcopy(env.rc())
    labelled["metadata"].setdefault("labels", {})["team"] = "a"
    env.add(labelled)
    await env.reconcile()
    assert len(calls) == 3


async def test_malformed_template_never_crashes() -> None:
    env = Env()
    rc = raycluster(replicas=1)
    rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"] = "not-a-list"
    env.add(rc)
    res = await env.reconcile()
    assert res.requeue_after == 2.0
    assert any(e[0] == "Warning" for e in env.recorder.events)


async def test_external_managed_by_is_skipped() -> None:
    env = Env()
    env.add(raycluster(managedBy=C.MANAGED_BY_MULTIKUEUE))
    assert (await env.reconcile()).requeue_after is None
    assert env.kube.calls == []


async def test_missing_cluster_forgets_expectations() -> None:
    env = Env(live=False)
    env.add(raycluster(replicas=2))
    await env.reconcile()
    assert len(env.r.exp) == 3
    del env.kube._kind(RAYCLUSTERS)[(NS, "rc")]
    await env.reconcile()
    assert len(env.r.exp) == 0


async def test_autoscaler_rbac_is_created_and_user_named_sa_must_exist() -> None:
    env = Env()
    env.add(raycluster(replicas=0, enableInTreeAutoscaling=True))
    await env.reconcile()
    assert C.EV_CREATED_SERVICE_ACCOUNT in env.recorder.reasons()
    assert C.EV_CREATED_ROLE in env.recorder.reasons() and C.EV_CREATED_ROLE_BINDING in env.recorder.reasons()

    env2 = Env()
    rc = raycluster(name="x", replicas=0, enableInTreeAutoscaling=True)
    rc["spec"]["headGroupSpec"]["template"]["spec"]["serviceAccountName"] = "x"
    env2.add(rc)
    await env2.reconcile("x")
    assert C.EV_AUTOSCALER_SA_NOT_FOUND in env2.recorder.reasons()
    assert env2.heads("x") == []  # stops before pods, like KubeRay


@pytest.mark.parametrize("user_named_sa", [False, True])
async def test_cached_children_are_not_read_from_the_api_on_every_pass(user_named_sa: bool) -> None:
    env = Env(cached_children=True)
    reads: list[str] = []
    real = env.kube.get_or_none

    async def counting(res: Any, name: str, namespace: str | None = None) -> Any:
        reads.append(f"{res.plural}/{name}")
        return await real(res, name, namespace)

    env.kube.get_or_none = counting  # type: ignore[method-assign]
    rc = raycluster(replicas=0, enableInTreeAutoscaling=True, authOptions={"mode": "token"})
    if user_named_sa:
        rc["spec"]["headGroupSpec"]["template"]["spec"]["serviceAccountName"] = "rc"
        env.kube.put(SERVICEACCOUNTS, {"metadata": {"name": "rc", "namespace": NS}})  # the user's, no label
    env.add(rc)
    await env.reconcile()
    created = [c for c in env.kube.calls if c[0] == "create"]
    assert {"roles", "rolebindings", "secrets"} <= {c[1] for c in created}
    assert ("serviceaccounts" in {c[1] for c in created}) is not user_named_sa
    assert len(env.heads()) == 1
    reads.clear()
    await env.reconcile()
    await env.reconcile()
    # Only the user's own ServiceAccount, which our label-selected cache cannot hold, is read again.
    assert reads == (["serviceaccounts/rc"] * 2 if user_named_sa else [])
    assert [c for c in env.kube.calls if c[0] == "create"] == created, "nothing created twice"


async def test_auth_secret_gets_a_random_token_once() -> None:
    env = Env()
    env.add(raycluster(replicas=0, authOptions={"mode": "token"}))
    await env.reconcile()
    sec = env.kube._kind(SimpleNamespace(plural="secrets"))[(NS, "rc")]  # type: ignore[arg-type]
    token = sec["stringData"]["auth_token"]
    assert len(token) == 44
    await env.reconcile()
    assert env.kube._kind(SimpleNamespace(plural="secrets"))[(NS, "rc")]["stringData"]["auth_token"] == token  # type: ignore[arg-type]


async def test_gcs_ft_redis_finalizer_and_cleanup_job_flow() -> None:
    env = Env()
    env.add(raycluster(replicas=1, gcsFaultToleranceOptions={"redisAddress": "redis:6379"}))
    res = await env.reconcile()
    assert env.rc()["metadata"]["finalizers"] == [C.FINALIZER_GCS_FT_REDIS_CLEANUP]
    assert res.requeue_after == 2.0 and env.kube._kind(PODS) == {}
    await env.reconcile()
    assert len(env.heads()) == 1
    env.rc()["metadata"]["deletionTimestamp"] = "1970-01-12T13:46:40Z"  # == env.now
    res = await env.reconcile()
    assert env.kube._kind(PODS) == {}  # all pods deleted
    assert res.requeue_after == 10.0 or res.requeue_after == 2.0
    await env.reconcile()
    assert env.kube.names(JOBS) == ["rc-redis-cleanup"]
    assert C.EV_CREATED_REDIS_CLEANUP_JOB in env.recorder.reasons()
    await env.reconcile()
    assert (NS, "rc") in env.kube._kind(RAYCLUSTERS)  # job still running: finalizer stays
    env.kube._kind(JOBS)[(NS, "rc-redis-cleanup")]["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}]
    }
    await env.reconcile()
    assert (NS, "rc") not in env.kube._kind(RAYCLUSTERS)


async def test_gcs_ft_finalizer_is_force_removed_after_timeout() -> None:
    env = Env()
    rc = raycluster(replicas=0, gcsFaultToleranceOptions={"redisAddress": "redis:6379"})
    rc["metadata"]["annotations"] = {C.ANN_GCS_FT_DELETION_TIMEOUT: "60"}
    rc["metadata"]["finalizers"] = [C.FINALIZER_GCS_FT_REDIS_CLEANUP]
    rc["metadata"]["deletionTimestamp"] = "1970-01-12T13:46:40Z"
    env.add(rc)
    await env.reconcile()
    assert env.kube.names(JOBS) == ["rc-redis-cleanup"]
    env.now += 61
    await env.reconcile()
    assert (NS, "rc") not in env.kube._kind(RAYCLUSTERS)
    assert C.EV_FORCE_DELETED_STUCK_CLUSTER in env.recorder.reasons()


async def test_recreate_upgrade_deletes_all_pods_on_spec_change() -> None:
    env = Env()
    env.add(raycluster(replicas=2, upgradeStrategy={"type": "Recreate"}))
    await env.reconcile()
    old = env.heads() + env.workers()
    await env.reconcile()
    assert env.heads() + env.workers() == old  # same hash: nothing happens
    env.rc()["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = "ray:2"
    await env.reconcile()
    assert env.kube._kind(PODS) == {}
    await env.reconcile()
    assert len(env.heads()) == 1 and not set(env.heads()) & set(old)


async def test_create_failure_sets_replica_failure_reason() -> None:
    env = Env()
    env.add(raycluster(replicas=1))
    env.kube.fail_create["pods"] = ApiError(403, {"reason": "Forbidden", "message": "quota"})
    res = await env.reconcile()
    assert res.requeue_after == 2.0
    assert env.rc()["status"]["reason"] == "FailedCreateHeadPod"
    assert C.EV_FAILED_CREATE_HEAD_POD in env.recorder.reasons()


async def test_multi_host_group_gets_headless_service_and_whole_replicas() -> None:
    env = Env()
    rc = raycluster(replicas=2)
    rc["spec"]["workerGroupSpecs"][0]["numOfHosts"] = 3
    env.add(rc)
    await env.reconcile()
    assert "rc-headless" in env.kube.names(SERVICES)
    pods = [
        p for p in env.kube._kind(PODS).values() if p["metadata"]["labels"][C.LABEL_NODE_TYPE] == "worker"
    ]
    assert len(pods) == 6
    by_replica: dict[str, list[str]] = {}
    for p in pods:
        lb = p["metadata"]["labels"]
        by_replica.setdefault(lb[C.LABEL_WORKER_GROUP_REPLICA_NAME], []).append(
            lb[C.LABEL_REPLICA_HOST_INDEX]
        )
    assert sorted(sorted(v) for v in by_replica.values()) == [["0", "1", "2"], ["0", "1", "2"]]


@pytest.mark.parametrize("annotation", ["true"])
async def test_serve_service_only_with_annotation(annotation: str) -> None:
    env = Env()
    env.add(raycluster(replicas=0))
    await env.reconcile()
    assert "rc-serve-svc" not in env.kube.names(SERVICES)
    env.rc()["metadata"]["annotations"] = {C.ANN_ENABLE_SERVE_SERVICE: annotation}
    await env.reconcile()
    assert "rc-serve-svc" in env.kube.names(SERVICES)


async def test_a_create_that_times_out_is_expected_not_repeated() -> None:
    env = Env(live=False)
    env.add(raycluster(replicas=3))
    env.kube.timeouts_after_create["pods"] = 2  # two pods exist, but we never heard back
    res = await env.reconcile()
    assert res.requeue_after == 2.0
    assert len(env.workers()) == 3 and len(env.heads()) == 1
    for _ in range(3):  # the cache still lags: nothing is created twice
        await env.reconcile()
    assert len(env.workers()) == 3 and len(env.heads()) == 1
    env.pods.sync()
    await env.reconcile()
    assert len(env.workers()) == 3 and len(env.heads()) == 1


async def test_cache_moving_during_an_await_never_leads_to_duplicates() -> None:
    """The worker count is read right after the expectations check, not before the head's creation."""
    env = Env(live=False)
    env.add(raycluster(replicas=3))
    state = {"head_creates": 0}

    def hook(res: Any, obj: dict[str, Any]) -> None:
        if res.plural != "pods" or obj["metadata"]["labels"][C.LABEL_NODE_TYPE] != "head":
            return
        state["head_creates"] += 1
        if state["head_creates"] == 1:
            raise ApiError(500, {"reason": "InternalError", "message": "try again"})
        env.pods.sync()  # the informer catches up while the head's POST is in flight

    env.kube.before_create = hook
    await env.reconcile()  # head failed, 3 workers created; the cache has seen none of them
    assert len(env.workers()) == 3 and env.heads() == []
    await env.reconcile()  # creates the head; the cache shows the 3 workers meanwhile
    await env.reconcile()
    assert len(env.workers()) == 3 and len(env.heads()) == 1
