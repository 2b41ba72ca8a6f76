"""RayCluster status calculation (docs/compatibility.md#raycluster-status): table of scenarios, conditions,
resources, and the rule deciding when the status is worth writing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from rayop.builders import status as S

NOW = "2026-11-22T03:00:00Z"
EARLIER = "2026-01-01T00:00:00Z"
Obj = dict[str, Any]


class Err(Exception):
    def __init__(self, msg: str, reason: str = "") -> None:
        super().__init__(msg)
        self.reason = reason


def cluster(**spec: Any) -> Obj:
    base: Obj = {
        "rayVersion": "2.60.0",
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {
                "spec": {"containers": [{"name": "ray-head", "resources": {"requests": {"cpu": "1"}}}]}
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": "wg",
                "replicas": 1,
                "minReplicas": 0,
                "maxReplicas": 4,
                "template": {"spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "2"}}}]}},
            }
        ],
    }
    status = spec.pop("status", None)
    base.update(spec)
    out: Obj = {"metadata": {"name": "rc", "namespace": "ns", "generation": 7}, "spec": base}
    if status is not None:
        out["status"] = status
    return out


def p(kind: str, name: str, phase: str = "Running", ready: str | None = "True", **status: Any) -> Obj:
    st: Obj = {"phase": phase, **status}
    if ready is not None:
        st.setdefault("conditions", []).append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": name, "labels": {"ray.io/cluster": "rc", "ray.io/node-type": kind}},
        "status": st,
    }


HEAD = p("head", "rc-head-x", podIP="10.0.0.5")
WORKER = p("worker", "rc-wg-worker-a")


def cond(st: Obj, ctype: str) -> Obj | None:
    return next((c for c in st.get("conditions") or [] if c["type"] == ctype), None)


def calc(c: Obj, pods: list[Obj], svc: Obj | None = None, err: Any = None, **kw: Any) -> Obj:
    return S.calculate_status(c, pods, svc, reconcile_error=err, now=NOW, **kw)


# Each row: (id, cluster, pods, head service, reconcile error, gates, expected sub-fields)
CASES: list[tuple[str, Obj, list[Obj], Obj | None, Any, Any, Obj]] = [
    ("fresh-no-pods", cluster(), [], None, None, None, {"state": None, "desiredWorkerReplicas": 1}),
    ("all-ready", cluster(), [HEAD, WORKER], None, None, None, {"state": "ready", "readyWorkerReplicas": 1}),
    (
        "worker-pending",
        cluster(),
        [HEAD, p("worker", "w", "Pending", None)],
        None,
        None,
        None,
        {"state": None, "availableWorkerReplicas": None, "readyWorkerReplicas": None},
    ),
    (
        "worker-running-not-ready",
        cluster(),
        [HEAD, p("worker", "w", ready="False")],
        None,
        None,
        None,
        {"state": None, "availableWorkerReplicas": 1, "readyWorkerReplicas": None},
    ),
    ("reconcile-error-blocks-ready", cluster(), [HEAD, WORKER], None, Err("boom"), None, {"state": None}),
    ("too-many-pods", cluster(), [HEAD, WORKER, p("worker", "w2")], None, None, None, {"state": None}),
    ("too-few-pods", cluster(), [HEAD], None, None, None, {"state": None}),
    (
        "running-without-ready-condition-counts",
        cluster(),
        [HEAD, p("worker", "w", ready=None)],
        None,
        None,
        None,
        {"state": "ready", "readyWorkerReplicas": None, "availableWorkerReplicas": 1},
    ),
    (
        "ready-is-sticky",
        cluster(status={"state": "ready"}),
        [HEAD, p("worker", "w", "Failed", "False")],
        None,
        None,
        None,
        {"state": "ready"},
    ),
    (
        "reason-cleared-when-ready",
        cluster(status={"reason": "old"}),
        [HEAD, WORKER],
        None,
        None,
        None,
        {"state": "ready", "reason": None},
    ),
    (
        "reason-kept-when-not-ready",
        cluster(status={"reason": "old"}),
        [HEAD],
        None,
        None,
        None,
        {"reason": "old"},
    ),
    ("observed-generation", cluster(), [], None, None, None, {"observedGeneration": 7}),
    ("suspend-no-pods-state", cluster(suspend=True), [], None, None, None, {"state": "suspended"}),
    ("suspend-pods-left", cluster(suspend=True), [HEAD], None, None, None, {"state": None}),
    (
        "zero-workers-ready",
        cluster(workerGroupSpecs=[]),
        [HEAD],
        None,
        None,
        None,
        {"state": "ready", "desiredWorkerReplicas": None},
    ),
    (
        "desired-clamped-to-max",
        cluster(workerGroupSpecs=[{"groupName": "g", "replicas": 9, "maxReplicas": 3}]),
        [],
        None,
        None,
        None,
        {"desiredWorkerReplicas": 3, "maxWorkerReplicas": 3},
    ),
    (
        "desired-nil-replicas-is-min",
        cluster(workerGroupSpecs=[{"groupName": "g", "minReplicas": 2}]),
        [],
        None,
        None,
        None,
        {"desiredWorkerReplicas": 2, "minWorkerReplicas": 2, "maxWorkerReplicas": 2**31 - 1},
    ),
    (
        "num-of-hosts-multiplies",
        cluster(
            workerGroupSpecs=[
                {"groupName": "g", "replicas": 2, "minReplicas": 1, "maxReplicas": 3, "numOfHosts": 4}
            ]
        ),
        [],
        None,
        None,
        None,
        {"desiredWorkerReplicas": 8, "minWorkerReplicas": 4, "maxWorkerReplicas": 12},
    ),
    (
        "suspended-group-excluded",
        cluster(
            workerGroupSpecs=[
                {"groupName": "g", "replicas": 2, "minReplicas": 1, "maxReplicas": 3, "suspend": True}
            ]
        ),
        [HEAD],
        None,
        None,
        None,
        {
            "desiredWorkerReplicas": None,
            "minWorkerReplicas": None,
            "maxWorkerReplicas": None,
            "desiredCPU": "1",
            "state": "ready",
        },
    ),
    (
        "max-capped-int32",
        cluster(workerGroupSpecs=[{"groupName": "a"}, {"groupName": "b"}]),
        [],
        None,
        None,
        None,
        {"maxWorkerReplicas": 2**31 - 1},
    ),
    ("cpu-requests-win-limits-fill", cluster(), [], None, None, None, {"desiredCPU": "3"}),
    (
        "gates-off-no-conditions",
        cluster(),
        [HEAD, WORKER],
        None,
        None,
        {"RayClusterStatusConditions": False},
        {"state": "ready", "conditions": None},
    ),
    (
        "gates-off-suspend",
        cluster(suspend=True),
        [],
        None,
        None,
        {"RayClusterStatusConditions": False},
        {"state": "suspended", "conditions": None},
    ),
]


@pytest.mark.parametrize(
    ("cid", "c", "pods", "svc", "err", "gates", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_status_fields(
    cid: str, c: Obj, pods: list[Obj], svc: Obj | None, err: Any, gates: Any, want: Obj
) -> None:
    st = calc(c, pods, svc, err, gates=gates)
    for key, value in want.items():
        assert st.get(key) == value, f"{cid}: {key} = {st.get(key)!r}, want {value!r}"


def test_fresh_conditions_order_and_reasons() -> None:
    st = calc(cluster(), [])
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
        ("HeadPodReady", "False", "HeadPodNotFound"),
        ("RayClusterProvisioned", "False", "RayClusterPodsProvisioning"),
        ("RayClusterSuspended", "False", "RayClusterSuspended"),
        ("RayClusterSuspending", "False", "RayClusterSuspending"),
    ]
    assert all(c["lastTransitionTime"] == NOW for c in st["conditions"])
    assert cond(st, "HeadPodReady")["message"] == "Head Pod not found"  # type: ignore[index]


def test_provisioned_true_when_existing_pods_ready_even_if_fewer_than_desired() -> None:
    # KubeRay checks only that every existing pod is running and ready, not the count.
    st = calc(cluster(), [HEAD])
    c = cond(st, "RayClusterProvisioned")
    assert c is not None and (c["status"], c["reason"]) == ("True", "AllPodRunningAndReadyFirstTime")
    assert "state" not in st


def test_provisioned_is_sticky() -> None:
    first = calc(cluster(), [HEAD, WORKER])
    again = calc(cluster(status=first), [HEAD, p("worker", "w", ready="False")])
    assert cond(again, "RayClusterProvisioned")["status"] == "True"  # type: ignore[index]


def test_head_ready_condition_mirrors_pod() -> None:
    st = calc(cluster(), [HEAD])
    assert (cond(st, "HeadPodReady")["status"], cond(st, "HeadPodReady")["reason"]) == (  # type: ignore[index]
        "True",
        "HeadPodRunningAndReady",
    )


def test_head_ready_unknown_without_ready_condition() -> None:
    st = calc(cluster(), [p("head", "h", "Pending", None)])
    c = cond(st, "HeadPodReady")
    assert c is not None and (c["status"], c["reason"], c["message"]) == ("False", "Unknown", "")


def test_head_ready_uses_pod_reason_and_message() -> None:
    head = p(
        "head",
        "h",
        ready=None,
        conditions=[{"type": "Ready", "status": "False", "reason": "PodCompleted", "message": "done"}],
    )
    c = cond(calc(cluster(), [head]), "HeadPodReady")
    assert c is not None and (c["status"], c["reason"], c["message"]) == ("False", "PodCompleted", "done")


def test_head_ready_surfaces_container_waiting_reason() -> None:
    head = p(
        "head",
        "h",
        ready=None,
        conditions=[
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "unready"}
        ],
        containerStatuses=[
            {"name": "ray-head", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}
        ],
    )
    c = cond(calc(cluster(), [head]), "HeadPodReady")
    assert c is not None and (c["reason"], c["message"]) == ("CrashLoopBackOff", "back-off")


def test_replica_failure_from_error_reason() -> None:
    st = calc(cluster(), [HEAD], err=Err("create failed", "FailedCreateWorkerPod"))
    c = cond(st, "ReplicaFailure")
    assert c is not None and (c["status"], c["reason"], c["message"]) == (
        "True",
        "FailedCreateWorkerPod",
        "create failed",
    )
    assert st["conditions"][0]["type"] == "ReplicaFailure"


def test_replica_failure_from_explicit_reason_and_string_error() -> None:
    st = calc(cluster(), [], err="api down", replica_failure_reason="FailedDeleteAllPods")
    assert cond(st, "ReplicaFailure")["reason"] == "FailedDeleteAllPods"  # type: ignore[index]


def test_error_without_reason_sets_no_replica_failure() -> None:
    assert cond(calc(cluster(), [], err=Err("other")), "ReplicaFailure") is None


def test_replica_failure_removed_when_clean() -> None:
    failed = calc(cluster(), [], err=Err("x", "FailedCreateHeadPod"))
    assert cond(calc(cluster(status=failed), []), "ReplicaFailure") is None


def test_replica_failure_kept_on_unrelated_error() -> None:
    failed = calc(cluster(), [], err=Err("x", "FailedCreateHeadPod"))
    st = calc(cluster(status=failed), [], err=Err("service failed"))
    assert cond(st, "ReplicaFailure")["reason"] == "FailedCreateHeadPod"  # type: ignore[index]


def test_transition_time_moves_only_on_status_flip() -> None:
    old = calc(cluster(), [])
    for c in old["conditions"]:
        c["lastTransitionTime"] = EARLIER
    same = calc(cluster(status=old), [])
    assert all(c["lastTransitionTime"] == EARLIER for c in same["conditions"])
    flipped = calc(cluster(status=old), [HEAD])
    assert cond(flipped, "HeadPodReady")["lastTransitionTime"] == NOW  # type: ignore[index]
    assert cond(flipped, "RayClusterSuspended")["lastTransitionTime"] == EARLIER  # type: ignore[index]


def test_suspend_requested_sets_suspending() -> None:
    st = calc(cluster(suspend=True), [HEAD, WORKER])
    assert cond(st, "RayClusterSuspending")["status"] == "True"  # type: ignore[index]
    assert cond(st, "RayClusterSuspended")["status"] == "False"  # type: ignore[index]


def test_suspending_waits_for_pods_then_suspended() -> None:
    st = calc(cluster(suspend=True), [HEAD])
    st = calc(cluster(suspend=True, status=st), [HEAD])
    assert cond(st, "RayClusterSuspending")["status"] == "True"  # type: ignore[index]
    st = calc(cluster(suspend=True, status=st), [])
    assert cond(st, "RayClusterSuspending")["status"] == "False"  # type: ignore[index]
    assert cond(st, "RayClusterSuspended")["status"] == "True"  # type: ignore[index]
    prov = cond(st, "RayClusterProvisioned")
    assert prov is not None and (prov["status"], prov["message"]) == (
        "False",
        "RayCluster has been suspended",
    )
    assert st["state"] == "suspended" and st["stateTransitionTimes"] == {"suspended": NOW}


def test_suspending_is_atomic_even_if_user_flips_back() -> None:
    st = calc(cluster(suspend=True), [HEAD])
    st = calc(cluster(suspend=False, status=st), [HEAD])
    assert cond(st, "RayClusterSuspending")["status"] == "True"  # type: ignore[index]


def test_resume_clears_suspended_and_reprovisions() -> None:
    st = calc(cluster(suspend=True), [HEAD])
    st = calc(cluster(suspend=True, status=st), [])
    still = calc(cluster(suspend=True, status=st), [])
    assert cond(still, "RayClusterSuspended")["status"] == "True"  # type: ignore[index]
    resumed = calc(cluster(suspend=False, status=st), [])
    assert cond(resumed, "RayClusterSuspended")["status"] == "False"  # type: ignore[index]
    ready = calc(cluster(status=resumed), [HEAD, WORKER])
    assert cond(ready, "RayClusterProvisioned")["status"] == "True"  # type: ignore[index]


def test_never_suspending_and_suspended_both_true() -> None:
    st: Obj = {}
    for suspend, pods in [(True, [HEAD]), (True, []), (True, []), (False, []), (False, [HEAD, WORKER])]:
        st = calc(cluster(suspend=suspend, status=st), pods)
        trues = {c["type"] for c in st["conditions"] if c["status"] == "True"}
        assert not {"RayClusterSuspending", "RayClusterSuspended"} <= trues


def test_state_transition_times_only_on_change() -> None:
    st = calc(cluster(), [HEAD, WORKER])
    assert st["stateTransitionTimes"] == {"ready": NOW}
    st["stateTransitionTimes"] = {"ready": EARLIER}
    again = S.calculate_status(
        cluster(status=st), [HEAD, WORKER], None, reconcile_error=None, now="2026-12-01T00:00:00Z"
    )
    assert again["stateTransitionTimes"] == {"ready": EARLIER}
    assert again["lastUpdateTime"] == "2026-12-01T00:00:00Z"


def test_endpoints_and_head_info() -> None:
    svc = {
        "metadata": {"name": "rc-head-svc"},
        "spec": {
            "clusterIP": "10.96.0.10",
            "ports": [
                {"name": "dashboard", "port": 8265, "targetPort": 8265, "nodePort": 30265},
                {"name": "client", "port": 10001, "targetPort": "client"},
                {"name": "gcs-server", "port": 6379, "targetPort": 6379},
                {"name": "none", "port": 1},
            ],
        },
    }
    st = calc(cluster(status={"endpoints": {"old": "1"}}), [HEAD], svc)
    assert st["endpoints"] == {"old": "1", "dashboard": "30265", "client": "client", "gcs-server": "6379"}
    assert st["head"] == {
        "podIP": "10.0.0.5",
        "podName": "rc-head-x",
        "serviceIP": "10.96.0.10",
        "serviceName": "rc-head-svc",
    }


def test_headless_service_ip_is_head_pod_ip() -> None:
    svc = {"metadata": {"name": "rc-head-svc"}, "spec": {"clusterIP": "None", "ports": []}}
    assert calc(cluster(), [HEAD], svc)["head"]["serviceIP"] == "10.0.0.5"
    assert "serviceIP" not in calc(cluster(), [], svc)["head"]


def _res_cluster(head: Obj, worker: Obj, replicas: int = 2, **group: Any) -> Obj:
    return cluster(
        headGroupSpec={"template": {"spec": {"containers": head["containers"]}}},
        workerGroupSpecs=[
            {
                "groupName": "g",
                "replicas": replicas,
                "template": {"spec": {"containers": worker["containers"]}},
                **group,
            }
        ],
    )


RESOURCE_CASES = [
    (
        "binary-sum",
        {"containers": [{"resources": {"requests": {"memory": "1Gi"}}}]},
        {"containers": [{"resources": {"requests": {"memory": "256Mi"}}}]},
        {},
        {"desiredMemory": "1536Mi"},
    ),
    (
        "decimal-head-format-wins",
        {"containers": [{"resources": {"requests": {"memory": "1G"}}}]},
        {"containers": [{"resources": {"requests": {"memory": "1Gi"}}}]},
        {},
        {"desiredMemory": "3147483648"},
    ),
    (
        "cpu-milli",
        {"containers": [{"resources": {"limits": {"cpu": "500m"}}}]},
        {"containers": [{"resources": {"limits": {"cpu": "250m"}}}]},
        {},
        {"desiredCPU": "1"},
    ),
    (
        "multi-container-sum",
        {
            "containers": [
                {"resources": {"requests": {"cpu": "1"}}},
                {"resources": {"requests": {"cpu": "500m"}}},
            ]
        },
        {"containers": []},
        {},
        {"desiredCPU": "1500m"},
    ),
    (
        "gpus-all-keys",
        {"containers": []},
        {
            "containers": [
                {
                    "resources": {
                        "limits": {"nvidia.com/gpu": "1", "amd.com/gpu": "2", "nvidia.com/mig-1g.5gb": "1"}
                    }
                }
            ]
        },
        {},
        {"desiredGPU": "8"},
    ),
    (
        "tpu",
        {"containers": []},
        {"containers": [{"resources": {"limits": {"google.com/tpu": "4"}}}]},
        {"numOfHosts": 2},
        {"desiredTPU": "16"},
    ),
    (
        "nothing",
        {"containers": []},
        {"containers": []},
        {},
        {"desiredCPU": "0", "desiredMemory": "0", "desiredGPU": "0", "desiredTPU": "0"},
    ),
]


@pytest.mark.parametrize(
    ("cid", "head", "worker", "group", "want"), RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES]
)
def test_desired_resources(cid: str, head: Obj, worker: Obj, group: Obj, want: Obj) -> None:
    st = calc(_res_cluster(head, worker, **group), [])
    for key, value in want.items():
        assert st[key] == value, f"{cid}: {key}"


def test_input_not_mutated() -> None:
    c = cluster(
        status={"conditions": [{"type": "HeadPodReady", "status": "False", "reason": "x", "message": ""}]}
    )
    before = copy.deepcopy(c)
    calc(c, [HEAD, WORKER])
    assert c == before


def test_datetime_now_is_rfc3339() -> None:
    from datetime import UTC, datetime

    st = S.calculate_status(
        cluster(), [], None, reconcile_error=None, now=datetime(2026, 1, 2, 3, 4, 5, 678, UTC)
    )
    assert st["lastUpdateTime"] == "2026-01-02T03:04:05Z"


CHANGED = [
    (
        "identical",
        {"state": "ready", "readyWorkerReplicas": 1},
        {"state": "ready", "readyWorkerReplicas": 1},
        False,
    ),
    ("only-last-update-time", {"lastUpdateTime": EARLIER}, {"lastUpdateTime": NOW}, False),
    ("only-observed-generation", {"observedGeneration": 1}, {"observedGeneration": 2}, False),
    ("only-desired-cpu", {"desiredCPU": "1"}, {"desiredCPU": "2"}, False),
    ("missing-vs-zero", {}, {"readyWorkerReplicas": 0, "endpoints": {}, "head": {}}, False),
    ("state", {"state": "ready"}, {"state": "suspended"}, True),
    ("reason", {}, {"reason": "x"}, True),
    ("counter", {"availableWorkerReplicas": 1}, {"availableWorkerReplicas": 2}, True),
    ("endpoints", {"endpoints": {"a": "1"}}, {"endpoints": {"a": "2"}}, True),
    ("head", {"head": {"podIP": "1"}}, {"head": {"podIP": "2"}}, True),
    (
        "condition-status",
        {"conditions": [{"type": "A", "status": "True"}]},
        {"conditions": [{"type": "A", "status": "False"}]},
        True,
    ),
    ("condition-added", {}, {"conditions": [{"type": "A", "status": "True"}]}, True),
]


@pytest.mark.parametrize(("cid", "old", "new", "want"), CHANGED, ids=[c[0] for c in CHANGED])
def test_status_changed(cid: str, old: Obj, new: Obj, want: bool) -> None:
    assert S.status_changed(old, new) is want


def test_steady_cluster_needs_no_write() -> None:
    st = calc(cluster(), [HEAD, WORKER])
    again = S.calculate_status(
        cluster(status=st), [HEAD, WORKER], None, reconcile_error=None, now="2027-01-01T00:00:00Z"
    )
    assert not S.status_changed(st, again)


# --- robustness: the status step runs outside the reconciler's per-step error handling ------------------------


_GARBAGE = hs.one_of(
    hs.none(),
    hs.booleans(),
    hs.integers(-5, 5),
    hs.text(max_size=5),
    hs.lists(hs.integers(), max_size=2),
    hs.dictionaries(hs.text(max_size=3), hs.integers(), max_size=2),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hs.data())
def test_status_never_raises_on_malformed_spec(data: Any) -> None:
    c = cluster(status={"state": "ready", "conditions": [{"type": "HeadPodReady", "status": "True"}]})
    c["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["requests"] = {
        "memory": "1Gi"
    }
    paths = _paths(c["spec"])
    for _ in range(data.draw(hs.integers(1, 3))):
        path = data.draw(hs.sampled_from(paths))
        cur: Any = c["spec"]
        try:
            for key in path[:-1]:
                cur = cur[key]
            cur[path[-1]] = data.draw(_GARBAGE)
        except (KeyError, IndexError, TypeError):
            continue
    st = calc(c, [HEAD, WORKER])
    assert isinstance(st, dict) and st["lastUpdateTime"] == NOW


_HEAD_READY = {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady"}
_HEAD_NOT_READY = {"type": "HeadPodReady", "status": "False", "reason": "ContainersNotReady"}
PROGRESS = [
    ("ready-workers", {"readyWorkerReplicas": 1}, {"readyWorkerReplicas": 2}, True),
    (
        "ready-workers-short-of-desired",
        {"readyWorkerReplicas": 10, "desiredWorkerReplicas": 50},
        {"readyWorkerReplicas": 30, "desiredWorkerReplicas": 50},
        True,
    ),
    (
        "ready-workers-reach-desired",
        {"readyWorkerReplicas": 49, "desiredWorkerReplicas": 50},
        {"readyWorkerReplicas": 50, "desiredWorkerReplicas": 50},
        False,
    ),
    ("available-workers", {"availableWorkerReplicas": 1}, {"availableWorkerReplicas": 2}, True),
    ("head-ip", {"head": {}}, {"head": {"podIP": "10.0.0.1", "podName": "h"}}, True),
    ("endpoints", {"state": ""}, {"endpoints": {"dashboard": "8265"}}, True),
    ("first-status", {}, {"readyWorkerReplicas": 1}, False),
    ("head-pod-ready", {"conditions": [_HEAD_NOT_READY]}, {"conditions": [_HEAD_READY]}, True),
    ("state", {"state": ""}, {"state": "ready"}, False),
    ("reason", {}, {"reason": "FailedCreateWorkerPod"}, False),
    ("desired-workers", {"desiredWorkerReplicas": 10}, {"desiredWorkerReplicas": 50}, False),
    (
        "provisioned",
        {"conditions": [{"type": "RayClusterProvisioned", "status": "False"}]},
        {"conditions": [{"type": "RayClusterProvisioned", "status": "True"}]},
        False,
    ),
    ("suspending", {}, {"conditions": [{"type": "RayClusterSuspending", "status": "True"}]}, False),
]


@pytest.mark.parametrize(("cid", "old", "new", "want"), PROGRESS, ids=[c[0] for c in PROGRESS])
def test_only_progress_changed(cid: str, old: Obj, new: Obj, want: bool) -> None:
    assert S.only_progress_changed(old, new) is want
