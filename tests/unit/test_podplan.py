"""The worker-group planning rules of KubeRay's reconcilePods (docs/compatibility.md#pods)."""

from __future__ import annotations

from typing import Any

from rayop.api import constants as C
from rayop.controllers.podplan import PodToCreate, free_indexes, plan_worker_group


def pod(
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    idx: int | None = None,
    replica: str | None = None,
    host: int | None = None,
    terminating: bool = False,
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    labels = {C.LABEL_GROUP: "g", C.LABEL_NODE_TYPE: "worker"}
    if idx is not None:
        labels[C.LABEL_WORKER_GROUP_REPLICA_INDEX] = str(idx)
    if replica is not None:
        labels[C.LABEL_WORKER_GROUP_REPLICA_NAME] = replica
    if host is not None:
        labels[C.LABEL_REPLICA_HOST_INDEX] = str(host)
    md: dict[str, Any] = {"name": name, "labels": labels, "creationTimestamp": created}
    if terminating:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": md, "status": {"phase": phase, "conditions": conds}}


def keep(p: dict[str, Any]) -> tuple[bool, str]:
    return False, ""


def failed(p: dict[str, Any]) -> tuple[bool, str]:
    return (p["status"]["phase"] == "Failed", "terminal")


def group(**kw: Any) -> dict[str, Any]:
    g: dict[str, Any] = {"groupName": "g", "numOfHosts": 1}
    g.update(kw)
    return g


def plan(
    g: dict[str, Any],
    pods: list[dict[str, Any]],
    desired: int,
    *,
    autoscaling: bool = False,
    random_delete: bool = False,
    indexing: bool = True,
    should_delete: Any = keep,
) -> Any:
    return plan_worker_group(
        g,
        pods,
        desired_pods=desired,
        autoscaling=autoscaling,
        random_delete=random_delete,
        multi_host_indexing=indexing,
        should_delete=should_delete,
        new_replica_name=lambda n: f"{n}-r",
    )


def test_scale_up_fills_smallest_free_indexes() -> None:
    p = plan(group(), [pod("a", idx=0), pod("b", idx=2)], 5)
    assert p.delete == []
    assert [c.replica_index for c in p.create] == [1, 3, 4]


def test_without_indexing_creates_plain_pods() -> None:
    p = plan(group(), [], 2, indexing=False)
    assert p.create == [PodToCreate(), PodToCreate()]


def test_unhealthy_pods_are_deleted_and_nothing_is_created_in_the_same_pass() -> None:
    p = plan(group(), [pod("a", phase="Failed"), pod("b")], 3, should_delete=failed)
    assert [n for n, _ in p.delete] == ["a"]
    assert p.create == []
    assert p.stop


def test_workers_to_delete_are_deleted_then_diff_is_recomputed() -> None:
    g = group(scaleStrategy={"workersToDelete": ["b", "not-ours"]})
    p = plan(g, [pod("a", idx=0), pod("b", idx=1), pod("c", idx=2)], 2, autoscaling=True)
    assert [n for n, _ in p.delete] == ["b"]
    assert p.create == []
    assert not p.stop


def test_workers_to_delete_with_unchanged_replicas_recreates() -> None:
    g = group(scaleStrategy={"workersToDelete": ["b"]})
    p = plan(g, [pod("a", idx=0), pod("b", idx=1)], 2, autoscaling=True)
    assert [n for n, _ in p.delete] == ["b"]
    assert [c.replica_index for c in p.create] == [1]


def test_autoscaler_is_the_only_decider_for_scale_down() -> None:
    p = plan(group(), [pod("a"), pod("b"), pod("c")], 1, autoscaling=True)
    assert p.delete == [] and p.create == []
    assert "Autoscaler" in p.note


def test_random_delete_env_allows_scale_down_with_autoscaler() -> None:
    p = plan(group(), [pod("a"), pod("b"), pod("c")], 1, autoscaling=True, random_delete=True)
    assert len(p.delete) == 2


def test_scale_down_prefers_not_ready_then_newest() -> None:
    pods = [
        pod("old-ready", created="2026-01-01T00:00:01Z"),
        pod("new-ready", created="2026-01-01T00:00:05Z"),
        pod("pending", phase="Pending", ready=False, created="2026-01-01T00:00:02Z"),
    ]
    p = plan(group(), pods, 1)
    assert [n for n, _ in p.delete] == ["pending", "new-ready"]


def test_terminating_pods_are_ignored() -> None:
    p = plan(group(), [pod("a", idx=0), pod("b", idx=1, terminating=True)], 2)
    assert [c.replica_index for c in p.create] == [1]
    assert p.delete == []


def test_suspended_group_deletes_all() -> None:
    p = plan(group(suspend=True), [pod("a")], 1)
    assert p.delete_all


def test_multi_host_creates_whole_replicas() -> None:
    g = group(numOfHosts=2)
    p = plan(g, [pod("a", idx=0, replica="g-x", host=0), pod("b", idx=0, replica="g-x", host=1)], 6)
    assert [(c.replica_index, c.replica_name, c.host_index) for c in p.create] == [
        (1, "g-r", 0),
        (1, "g-r", 1),
        (2, "g-r", 0),
        (2, "g-r", 1),
    ]


def test_multi_host_partial_replica_is_deleted_whole() -> None:
    g = group(numOfHosts=2)
    pods = [
        pod("a", idx=0, replica="g-x", host=0),
        pod("c", idx=1, replica="g-y", host=0),
        pod("d", idx=1, replica="g-y", host=1),
    ]
    p = plan(g, pods, 4)
    assert [n for n, _ in p.delete] == ["a"]
    assert p.stop and p.create == []


def test_multi_host_workers_to_delete_takes_the_whole_replica() -> None:
    g = group(numOfHosts=2, scaleStrategy={"workersToDelete": ["d"]})
    pods = [
        pod("a", idx=0, replica="g-x", host=0),
        pod("b", idx=0, replica="g-x", host=1),
        pod("c", idx=1, replica="g-y", host=0),
        pod("d", idx=1, replica="g-y", host=1),
    ]
    p = plan(g, pods, 2, autoscaling=True)
    assert sorted(n for n, _ in p.delete) == ["c", "d"]


def test_multi_host_unhealthy_host_takes_the_whole_replica() -> None:
    g = group(numOfHosts=2)
    pods = [pod("a", idx=0, replica="g-x", host=0, phase="Failed"), pod("b", idx=0, replica="g-x", host=1)]
    p = plan(g, pods, 2, should_delete=failed)
    assert sorted(n for n, _ in p.delete) == ["a", "b"]


def test_multi_host_scale_down_respects_autoscaler_rule() -> None:
    g = group(numOfHosts=2)
    pods = [
        pod("a", idx=0, replica="g-x", host=0),
        pod("b", idx=0, replica="g-x", host=1),
        pod("c", idx=1, replica="g-y", host=0),
        pod("d", idx=1, replica="g-y", host=1),
    ]
    assert plan(g, pods, 2, autoscaling=True).delete == []
    p = plan(g, pods, 2)
    assert sorted(n for n, _ in p.delete) == ["c", "d"]  # the highest replica index goes first


def test_free_indexes() -> None:
    assert free_indexes([None, 1, 3], 3) == [0, 2, 4]
    assert free_indexes([], 0) == []
