"""A RayService's worker groups as scale targets, the pure parts: the RayWorkerGroup `<rayservice>-<group>`,
the sizes a new cluster starts its groups at, the RayService machine creating and updating clusters at
those sizes without counting them as a spec change, and the hand-over to a promoted cluster."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from rayop.api import workergroup as W
from rayop.builders import rayservice as RB
from rayop.builders import workergroup as B
from rayop.controllers import rayservice_machine as M
from rayop.controllers import rayworkergroup_plan as P
from tests.unit.test_rayservice_machine import (
    SERVE_V1,
    cluster,
    cluster_config,
    names,
    obs,
    of,
    rayservice,
    status,
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def rwg_of(rs: dict[str, Any], group: str, replicas: int) -> dict[str, Any]:
    g = next(x for x in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"] if x["groupName"] == group)
    obj = B.build_worker_group(rs, g)
    obj["spec"]["replicas"] = replicas
    return obj


def world(*observed: M.ClusterObs, sizes: dict[str, int] | None = None) -> M.World:
    return M.World(
        now=NOW,
        clusters={o.cluster["metadata"]["name"]: o for o in observed},
        suffix="zzzzz",
        group_sizes=sizes or {},
    )


# The RayWorkerGroup of a RayService ---------------------------------------------------------------------


def test_a_services_worker_group_is_named_after_the_service_and_owned_by_it() -> None:
    rs = rayservice()
    obj = rwg_of(rs, "g0", 1)
    assert obj["metadata"]["name"] == "rs-g0"
    assert obj["spec"] == {"rayServiceName": "rs", "groupName": "g0", "replicas": 1}
    ref = obj["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("RayService", "rs", "u1", True)
    labels = obj["metadata"]["labels"]
    # Labelled like the service's clusters (so the RayService controller finds them), never with a cluster.
    assert labels.items() >= RB.originated_labels(rs).items()
    assert "ray.io/cluster" not in labels


def test_a_new_cluster_starts_a_group_at_the_size_its_rayworkergroup_asks_for() -> None:
    rs = rayservice()
    assert B.service_group_sizes(rs, [rwg_of(rs, "g0", 2)]) == {"g0": 2}
    # Within the group's bounds (1..3 here), as KubeRay would run it.
    assert B.service_group_sizes(rs, [rwg_of(rs, "g0", 9)]) == {"g0": 3}
    assert B.service_group_sizes(rs, [rwg_of(rs, "g0", 0)]) == {"g0": 1}
    # Ray's autoscaler sizes the group: the new cluster starts as the spec says.
    auto = rayservice(rayClusterConfig={**cluster_config(), "enableInTreeAutoscaling": True})
    assert B.service_group_sizes(auto, [rwg_of(auto, "g0", 2)]) == {}
    # Only the service's own RayWorkerGroups of groups it still has count.
    other = rwg_of(rs, "g0", 2)
    other["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    gone = rwg_of(rayservice(rayClusterConfig=cluster_config(groups=2)), "g1", 2)
    assert B.service_group_sizes(rs, [other, gone]) == {}


def test_the_size_is_not_part_of_the_hash_so_a_scale_write_starts_no_upgrade() -> None:
    rs = rayservice()
    plain = RB.build_cluster(rs, "rs-aaaaa")
    sized = RB.build_cluster(rs, "rs-aaaaa", sizes={"g0": 3})
    assert sized["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    assert plain["spec"]["workerGroupSpecs"][0]["replicas"] == 1
    key = "ray.io/hash-without-replicas-and-workers-to-delete"
    assert sized["metadata"]["annotations"][key] == plain["metadata"]["annotations"][key]
    assert M.same_spec(rs, sized)

    # A settled RayService whose group was scaled to 3 (the cluster runs 3): nothing to do.
    settled = rayservice(status=status(active="rs-aaaaa"))
    c = cluster(settled, "rs-aaaaa", applied=SERVE_V1)
    c["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    d = M.decide(settled, world(obs(c), sizes={"g0": 3}))
    assert not of(d, M.UpdateCluster) and not of(d, M.CreateCluster)
    assert names(d) == ("rs-aaaaa", "")


def test_the_pending_cluster_is_created_at_the_scaled_size() -> None:
    old = rayservice(status=status(active="rs-aaaaa"))
    c = cluster(old, "rs-aaaaa", applied=SERVE_V1)
    c["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    new = copy.deepcopy(old)
    new["spec"]["rayClusterConfig"] = cluster_config(image="rayproject/ray:2.61.0")
    # First pass: the spec changed, so a pending cluster is named ...
    d = M.decide(new, world(obs(c), sizes={"g0": 3}))
    assert names(d) == ("rs-aaaaa", "rs-zzzzz")
    # ... and the next creates it with the group at 3, not the spec's 1.
    new["status"] = d.status
    d = M.decide(new, world(obs(c), sizes={"g0": 3}))
    (create,) = of(d, M.CreateCluster)
    assert create.cluster["metadata"]["name"] == "rs-zzzzz"
    assert create.cluster["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    assert "rayproject/ray:2.61.0" in str(create.cluster["spec"])


def test_an_in_place_update_keeps_the_live_size_of_a_scaled_group() -> None:
    old = rayservice(status=status(active="rs-aaaaa"))
    c = cluster(old, "rs-aaaaa", applied=SERVE_V1)
    c["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    c["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": ["w1"]}
    new = copy.deepcopy(old)
    new["spec"]["rayClusterConfig"] = cluster_config(groups=2)  # g1 appended: updated in place
    d = M.decide(new, world(obs(c), sizes={"g0": 2}))
    (up,) = of(d, M.UpdateCluster)
    g0, g1 = up.cluster["spec"]["workerGroupSpecs"]
    # g0 keeps what runs (its RayWorkerGroup's controller brings it to 2, safely); g1 is new.
    assert g0["replicas"] == 3 and g0["scaleStrategy"] == {"workersToDelete": ["w1"]}
    assert g1["replicas"] == 1
    # Without RayWorkerGroups, as KubeRay: the spec's number.
    d = M.decide(new, world(obs(c)))
    (up,) = of(d, M.UpdateCluster)
    assert up.cluster["spec"]["workerGroupSpecs"][0]["replicas"] == 1


# The hand-over to a promoted cluster ---------------------------------------------------------------------


def service_rwg(
    replicas: int, *, gen: int = 2, cluster_name: str = "rs-old", marks: bool = True
) -> dict[str, Any]:
    st: dict[str, Any] = {"rayClusterName": cluster_name}
    if marks:
        st.update(observedGeneration=gen, syncedReplicas=replicas)
    return {
        "metadata": {"name": "rs-g", "namespace": "ns", "generation": gen},
        "spec": {"rayServiceName": "rs", "groupName": "g", "replicas": replicas},
        "status": st,
    }


def group(replicas: int, lo: int = 0, hi: int = 10) -> dict[str, Any]:
    return {"groupName": "g", "replicas": replicas, "minReplicas": lo, "maxReplicas": hi}


def test_a_promoted_cluster_is_brought_to_the_scale_targets_number() -> None:
    # Scaled to 4 on the old cluster; the new one runs 2 (its number moved since the marks): the scale
    # target's 4 goes to it, where a RayCluster edit would have been pulled.
    s = P.decide_sync(service_rwg(4), {}, group(2), "rs-new")
    assert (s.action, s.replicas) == (P.PUSH, 4)
    s = P.decide_sync(service_rwg(1), {}, group(2), "rs-new")
    assert (s.action, s.replicas) == (P.PUSH, 1)
    s = P.decide_sync(service_rwg(2), {}, group(2), "rs-new")
    assert s.action == P.IN_SYNC
    # A scale-down that takes several passes goes on after the status names the new cluster.
    s = P.decide_sync(service_rwg(1, cluster_name="rs-new", marks=False), {}, group(3), "rs-new")
    assert (s.action, s.replicas) == (P.PUSH, 1)
    # Ray's autoscaler owns the group: the new cluster's number is mirrored, as always.
    s = P.decide_sync(service_rwg(4), {"enableInTreeAutoscaling": True}, group(2), "rs-new")
    assert (s.action, s.replicas, s.ignored) == (P.PULL, 2, False)
    # On the same cluster nothing changes: an edit of the cluster comes back.
    s = P.decide_sync(service_rwg(4, cluster_name="rs-new"), {}, group(2), "rs-new")
    assert (s.action, s.replicas) == (P.PULL, 2)


def test_the_status_follows_the_active_cluster_and_drops_marks_of_the_old_one() -> None:
    obj = service_rwg(4)
    s = P.decide_sync(obj, {}, group(2), "rs-new")
    st = P.worker_group_status(
        obj,
        cluster_name="rs-new",
        group=group(2),
        pods=[],
        sync=s,
        condition=P.synced_condition(s),
        now=NOW,
    )
    assert st["rayClusterName"] == "rs-new"
    assert st["selector"] == "ray.io/cluster=rs-new,ray.io/group=g,ray.io/node-type=worker"
    assert "observedGeneration" not in st and "syncedReplicas" not in st
    assert st["conditions"][0]["reason"] == W.REASON_SCALING_UP
    # Once the two agree, the marks are the new cluster's.
    agreed = {**obj, "status": st}
    s = P.decide_sync(agreed, {}, group(4), "rs-new")
    assert s.action == P.IN_SYNC
    st = P.worker_group_status(
        agreed,
        cluster_name="rs-new",
        group=group(4),
        pods=[],
        sync=s,
        condition=P.synced_condition(s),
        now=NOW,
        observed=(2, 4),
    )
    assert (st["observedGeneration"], st["syncedReplicas"]) == (2, 4)
    assert not P.handed_over({**obj, "status": st}, "rs-new")


def test_the_active_cluster_of_a_rayservice() -> None:
    assert P.active_cluster(rayservice(status=status(active="rs-a", pending="rs-b"))) == "rs-a"
    assert P.active_cluster(rayservice()) == ""
