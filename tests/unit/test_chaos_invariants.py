"""The chaos campaign's invariants (tests/chaos/invariants.py) see what they must: each rule fails on a
namespace that breaks it and passes on one that keeps it."""

from __future__ import annotations

import random
import time
from typing import Any

from rayop.api import constants as C
from rayop.base.times import format_time
from tests.chaos import invariants as inv
from tests.chaos.campaign import Results, episode_seed, plan

Obj = dict[str, Any]


def rc(
    name: str, replicas: int, *, uid: str = "", suspend: bool = False, delete: list[str] | None = None
) -> Obj:
    group: Obj = {"groupName": "small", "replicas": replicas, "minReplicas": 0, "maxReplicas": 4}
    if delete:
        group["scaleStrategy"] = {"workersToDelete": delete}
    return {
        "metadata": {"name": name, "uid": uid or f"uid-{name}"},
        "spec": {"suspend": suspend, "workerGroupSpecs": [group]},
        "status": {
            "state": C.STATE_SUSPENDED if suspend else C.STATE_READY,
            "readyWorkerReplicas": 0 if suspend else replicas,
            "availableWorkerReplicas": 0 if suspend else replicas,
            "desiredWorkerReplicas": 0 if suspend else replicas,
        },
    }


def pod(name: str, cluster: str, kind: str, *, owner_uid: str | None = None) -> Obj:
    labels = {C.LABEL_CLUSTER: cluster, C.LABEL_NODE_TYPE: kind}
    if kind == C.NODE_TYPE_WORKER:
        labels[C.LABEL_GROUP] = "small"
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": labels,
            "ownerReferences": [
                {
                    "kind": "RayCluster",
                    "name": cluster,
                    "uid": owner_uid or f"uid-{cluster}",
                    "controller": True,
                }
            ],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def snap(clusters: list[Obj], pods: list[Obj], jobs: list[Obj] | None = None) -> inv.Snapshot:
    return inv.Snapshot(
        clusters=clusters,
        pods=pods,
        jobs=jobs or [],
        services=[],
        k8s_services=[],
        batch_jobs=[],
        workergroups=[],
    )


def healthy() -> tuple[list[Obj], list[Obj]]:
    return [rc("a", 2)], [
        pod("a-head", "a", C.NODE_TYPE_HEAD),
        pod("a-w1", "a", C.NODE_TYPE_WORKER),
        pod("a-w2", "a", C.NODE_TYPE_WORKER),
    ]


def test_a_consistent_cluster_passes() -> None:
    clusters, pods = healthy()
    s = snap(clusters, pods)
    assert inv.check_clusters(s) == [] and inv.check_owners(s) == [] and inv.check_terminating(s, 90) == []


def test_duplicate_head_and_extra_worker_are_seen() -> None:
    clusters, pods = healthy()
    pods += [pod("a-head-2", "a", C.NODE_TYPE_HEAD), pod("a-w3", "a", C.NODE_TYPE_WORKER)]
    got = {(v.invariant, v.subject, v.detail) for v in inv.check_clusters(snap(clusters, pods))}
    assert ("raycluster-pods", "a", "2 head Pods, want 1") in got
    assert ("raycluster-pods", "a/small", "3 workers, want 2") in got
    assert any(v[0] == "raycluster-status" for v in got)  # the status counted 2 ready workers, there are 3


def test_a_worker_named_for_deletion_that_lives_is_seen() -> None:
    clusters, pods = healthy()
    clusters[0]["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": ["a-w1"]}
    got = [str(v) for v in inv.check_clusters(snap(clusters, pods))]
    assert got == ["raycluster-pods a/small: named in workersToDelete yet alive: ['a-w1']"]


def test_suspended_cluster_wants_no_pods() -> None:
    clusters, pods = [rc("a", 2, suspend=True)], [pod("a-head", "a", C.NODE_TYPE_HEAD)]
    assert [str(v) for v in inv.check_clusters(snap(clusters, pods))] == [
        "raycluster-pods a: 1 head Pods, want 0"
    ]


def test_orphans_of_a_gone_or_replaced_owner_are_seen() -> None:
    clusters, pods = healthy()
    pods.append(pod("b-head", "b", C.NODE_TYPE_HEAD))  # its RayCluster is gone
    pods.append(pod("a-old", "a", C.NODE_TYPE_WORKER, owner_uid="uid-of-an-earlier-a"))
    bare = pod("c-head", "c", C.NODE_TYPE_HEAD)
    bare["metadata"]["ownerReferences"] = []
    pods.append(bare)
    got = sorted(str(v) for v in inv.check_owners(snap(clusters, pods)))
    assert got == [
        "orphan Pod a-old: its owner RayCluster a was replaced (other uid)",
        "orphan Pod b-head: its owner RayCluster b is gone",
        "orphan Pod c-head: a Ray Pod without a controller owner",
    ]


def test_stuck_terminating_is_seen_after_its_allowance() -> None:
    clusters, pods = healthy()
    clusters[0]["metadata"]["deletionTimestamp"] = format_time(time.time() - 200)
    clusters[0]["metadata"]["finalizers"] = ["ray.io/gcs-ft-redis-cleanup-finalizer"]
    s = snap(clusters, pods)
    assert [v.invariant for v in inv.check_terminating(s, 90)] == ["terminating"]
    assert inv.check_terminating(s, 300) == []


async def test_a_second_submission_and_a_wrong_status_are_seen() -> None:
    job = {
        "metadata": {"name": "j", "uid": "uid-j"},
        "spec": {"backoffLimit": 0},
        "status": {
            "jobDeploymentStatus": "Running",
            "jobId": "j-abc",
            "jobStatus": "RUNNING",
            "rayClusterName": "j-raycluster-x",
        },
    }

    async def ray_jobs(ns: str, cluster: str) -> dict[str, str] | None:
        return {"j-abc": "SUCCEEDED", "j-abc-again": "RUNNING"}

    got = [v.invariant for v in await inv.check_jobs(snap([], [], [job]), ray_jobs, "ns", 20)]
    assert got == ["rayjob-submissions", "rayjob-status"]

    async def once(ns: str, cluster: str) -> dict[str, str] | None:
        return {"j-abc": "RUNNING"}

    assert await inv.check_jobs(snap([], [], [job]), once, "ns", 20) == []


def test_a_ray_pod_not_ready_is_seen_though_the_counts_hold() -> None:
    # Found by the real-Ray segment: a head whose container had just restarted passed every count-based
    # rule, so a head kill "settled" in a second while Ray was still starting.
    clusters, pods = healthy()
    pods[0]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    s = snap(clusters, pods)
    assert inv.check_clusters(s) == []
    assert [str(v) for v in inv.check_ray_pods_ready(s, "a")] == [
        "ray-pods-ready a: Ray Pods not Running and Ready: ['a-head']"
    ]
    assert inv.check_ray_pods_ready(snap(*healthy()), "a") == []


def test_ray_must_count_one_alive_node_per_pod() -> None:
    assert inv.check_ray_nodes("a", 3, 3) == []
    assert [str(v) for v in inv.check_ray_nodes("a", 3, 1)] == [
        "ray-nodes a: Ray reports 1 alive nodes, 3 Ray Pods run"
    ]


def test_a_gcs_ft_cluster_must_keep_the_job_it_ran() -> None:
    assert inv.check_kept_job("ft", "canary", {"canary": "SUCCEEDED", "other": "RUNNING"}) == []
    lost = inv.check_kept_job("ft", "canary", {})
    assert [v.invariant for v in lost] == ["gcs-ft-state"] and "no longer knows" in lost[0].detail
    assert "is FAILED" in inv.check_kept_job("ft", "canary", {"canary": "FAILED"})[0].detail


def test_a_campaign_replays_from_its_seed() -> None:
    counts = {"operator-kill": 5, "api-429": 2, "leader-kill": 2}
    from tests.chaos.campaign import FAKE_FAULTS

    one = plan(counts, FAKE_FAULTS, random.Random(7))
    assert one == plan(counts, FAKE_FAULTS, random.Random(7))
    assert sorted(one) == sorted(k for k, n in counts.items() for _ in range(n))
    # Faults needing the two-replica operator run in one block (one switch of deployment).
    pair = [i for i, k in enumerate(one) if FAKE_FAULTS[k].mode == "pair"]
    assert pair == list(range(pair[0], pair[0] + len(pair)))
    assert episode_seed(7, 3) == episode_seed(7, 3) != episode_seed(7, 4)
    assert Results(seed=7).summary() == []


def test_a_failed_closing_check_fails_the_campaign() -> None:
    from tests.chaos.campaign import Check, Results

    results = Results(seed=1)
    results.checks.append(Check("ray", "gcs-ft-delete", True, "GCS FT RayCluster deleted, its keys cleaned"))
    assert not results.failed and str(results.checks[0]) == "GCS FT RayCluster deleted, its keys cleaned"
    results.checks.append(Check("ray", "gcs-ft-delete", False, "3 of its 6 keys are still in Redis"))
    assert results.failed
    assert str(results.checks[1]) == "VIOLATION gcs-ft-delete: 3 of its 6 keys are still in Redis"
    assert results.to_json()["checks"][1]["ok"] is False
