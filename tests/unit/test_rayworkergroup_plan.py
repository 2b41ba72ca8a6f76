"""The RayWorkerGroup controller's pure decisions: which way a replica count flows, and which workers a
scale-down removes (docs/scaling.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rayop.api import constants as C
from rayop.api import workergroup as W
from rayop.controllers import rayworkergroup_plan as P
from rayop.ray.nodes import RayNode

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def rwg(
    replicas: int, *, gen: int = 1, observed: int | None = 1, synced: int | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if synced is not None:
        status["syncedReplicas"] = synced
    return {
        "metadata": {"name": "c-g", "namespace": "ns", "generation": gen},
        "spec": {"rayClusterName": "c", "groupName": "g", "replicas": replicas},
        "status": status,
    }


def group(replicas: int | None, lo: int = 0, hi: int = 10, **kw: Any) -> dict[str, Any]:
    g: dict[str, Any] = {"groupName": "g", "minReplicas": lo, "maxReplicas": hi, **kw}
    if replicas is not None:
        g["replicas"] = replicas
    return g


AUTOSCALED = {"enableInTreeAutoscaling": True}


@pytest.mark.parametrize(
    ("name", "obj", "cspec", "grp", "want"),
    [
        # Ray's autoscaler owns the number: it is copied into the RayWorkerGroup, never pushed.
        ("autoscaler mirrors", rwg(3, synced=3), AUTOSCALED, group(5), (P.PULL, 5, False)),
        ("autoscaler in sync", rwg(5, synced=5), AUTOSCALED, group(5), (P.IN_SYNC, 5, False)),
        ("autoscaler ignores a write", rwg(9, gen=2, synced=5), AUTOSCALED, group(5), (P.PULL, 5, True)),
        # A new object adopts the cluster's number and writes nothing.
        ("new object adopts", rwg(2, observed=None), {}, group(2), (P.IN_SYNC, 2, False)),
        # A scale request (new generation) goes to the cluster, clamped.
        ("scale up", rwg(4, gen=2, synced=2), {}, group(2), (P.PUSH, 4, False)),
        ("scale down", rwg(1, gen=2, synced=3), {}, group(3), (P.PUSH, 1, False)),
        ("clamped to max", rwg(50, gen=2, synced=2), {}, group(2), (P.PUSH, 10, False)),
        ("clamped to min", rwg(0, gen=2, synced=3), {}, group(3, lo=2), (P.PUSH, 2, False)),
        ("request already met", rwg(3, gen=2, synced=2), {}, group(3), (P.IN_SYNC, 3, False)),
        # An edit of the RayCluster (its number moved since the two agreed) comes back.
        ("cluster edited", rwg(2, synced=2), {}, group(6), (P.PULL, 6, False)),
        # A request in progress wins over a concurrent edit of the cluster.
        ("request wins", rwg(1, gen=3, observed=2, synced=5), {}, group(4), (P.PUSH, 1, False)),
        # New bounds that let more of a clamped request run are applied ...
        ("max raised", rwg(50, synced=10), {}, group(10, hi=20), (P.PUSH, 20, False)),
        # ... while lower ones KubeRay applies itself.
        ("max lowered", rwg(8, synced=8), {}, group(8, hi=5), (P.IN_SYNC, 8, False)),
        # ... but a number KubeRay clamps anyway is not rewritten just to normalise it.
        ("out of bounds as written", rwg(0, synced=0), {}, group(0, lo=1), (P.IN_SYNC, 0, False)),
        ("in sync", rwg(3, synced=3), {}, group(3), (P.IN_SYNC, 3, False)),
        # Unset replicas read as minReplicas, as KubeRay reads them.
        ("unset replicas", rwg(1, synced=1), {}, group(None, lo=1), (P.IN_SYNC, 1, False)),
    ],
)
def test_which_way_the_number_flows(
    name: str, obj: dict[str, Any], cspec: dict[str, Any], grp: dict[str, Any], want: tuple[str, int, bool]
) -> None:
    s = P.decide_sync(obj, cspec, grp)
    assert (s.action, s.replicas, s.ignored) == want, name


def test_who_scales() -> None:
    assert P.decide_sync(rwg(1, synced=1), AUTOSCALED, group(1)).scaled_by == W.SCALED_BY_RAY_AUTOSCALER
    assert P.decide_sync(rwg(1, synced=1), {}, group(1)).scaled_by == W.SCALED_BY_SCALE_TARGET
    assert P.decide_sync(rwg(1, synced=1), {"suspend": True}, group(1)).scaled_by == W.SCALED_BY_NONE
    assert P.decide_sync(rwg(1, synced=1), {}, group(1, suspend=True)).scaled_by == W.SCALED_BY_NONE


# Pods, Ray nodes, drain Pods ------------------------------------------------------------------------


def pod(
    name: str,
    *,
    ready: bool = True,
    phase: str = "Running",
    created: str = "2026-01-01T00:00:00Z",
    replica: str | None = None,
    terminating: bool = False,
    ip: str = "",
) -> dict[str, Any]:
    labels = {C.LABEL_GROUP: "g", C.LABEL_NODE_TYPE: "worker", C.LABEL_CLUSTER: "c"}
    if replica:
        labels[C.LABEL_WORKER_GROUP_REPLICA_NAME] = replica
    md: dict[str, Any] = {"name": name, "labels": labels, "creationTimestamp": created}
    if terminating:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": md,
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def node(pod_name: str, *, tasks: int = 0, actors: int = 0, copies: int = 0, alive: bool = True) -> RayNode:
    return RayNode(
        node_id=f"id-{pod_name}",
        instance_id=pod_name,
        ip="",
        alive=alive,
        tasks=tasks,
        actors=actors,
        primary_copies=copies,
    )


def drain(worker: str, phase: str = "Running", code: int | None = None, message: str = "") -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "ray-head", "state": {"running": {}}}
    if code is not None:
        cs["state"] = {"terminated": {"exitCode": code, "message": message}}
    return {
        "metadata": {
            "name": f"d-{worker}",
            "annotations": {W.ANN_DRAIN_WORKER_POD: worker, W.ANN_DRAIN_RAY_NODE_ID: f"id-{worker}"},
        },
        "status": {"phase": phase, "containerStatuses": [cs]},
    }


def test_drain_results_tell_accepted_refused_and_failed_apart() -> None:
    assert P.drain_result(drain("a", "Pending")).state == P.DRAIN_RUNNING
    assert P.drain_result(drain("a", "Succeeded", 0)).state == P.DRAIN_ACCEPTED
    refused = P.drain_result(drain("a", "Failed", W.DRAIN_EXIT_REFUSED, "not accepted: no longer idle"))
    assert (refused.state, refused.worker, refused.node_id) == (P.DRAIN_REFUSED, "a", "id-a")
    assert "no longer idle" in refused.message
    assert P.drain_result(drain("a", "Failed", 1)).state == P.DRAIN_FAILED
    assert P.drain_result(drain("a", "Failed", 1)).message == "exit code 1"
    deadline = {**drain("a", "Failed"), "status": {"phase": "Failed", "reason": "DeadlineExceeded"}}
    assert P.drain_result(deadline).message == "DeadlineExceeded"


def test_units_group_multi_host_replicas_and_skip_terminating_pods() -> None:
    pods = [
        pod("a", replica="r1"),
        pod("b", replica="r1"),
        pod("c", replica="r2"),
        pod("d", terminating=True),
    ]
    units = P.group_units(pods, num_hosts=2)
    assert sorted((u.name, tuple(u.pod_names)) for u in units) == [("r1", ("a", "b")), ("r2", ("c",))]
    assert [u.name for u in P.group_units(pods)] == ["a", "b", "c"]


def plan(pods: list[dict[str, Any]], current: int, target: int, nodes: Any, **kw: Any) -> P.ScaleDown:
    return P.plan_scale_down(P.group_units(pods), current=current, target=target, nodes=nodes, **kw)


def test_replicas_without_pods_go_first_and_cost_nothing() -> None:
    down = plan([pod("a"), pod("b")], current=4, target=2, nodes=None)
    assert (down.free, down.remove, down.drain, down.short) == (2, [], [], 0)


def test_pods_that_run_nothing_in_ray_go_before_idle_nodes() -> None:
    pods = [pod("idle"), pod("pending", ready=False, phase="Pending"), pod("busy")]
    nodes = [node("idle"), node("busy", tasks=1)]
    down = plan(pods, current=3, target=1, nodes=nodes)
    assert [c.unit.name for c in down.remove] == ["pending"]
    assert "not ready" in down.remove[0].why
    assert [d.unit.name for d in down.drain] == ["idle"]
    assert down.drain[0].nodes[0][1].node_id == "id-idle"
    assert down.short == 0 and down.removed == 1


def test_busy_nodes_are_never_chosen_and_the_plan_says_why_busiest_first() -> None:
    pods = [pod("task"), pod("actor"), pod("objects")]
    nodes = [node("task", tasks=1), node("actor", actors=2, tasks=1), node("objects", copies=1)]
    down = plan(pods, current=3, target=1, nodes=nodes)
    assert down.remove == [] and down.drain == [] and down.short == 2
    assert [c.unit.name for c in down.blocked] == ["actor", "task", "objects"]
    assert down.blocked[0].why == "actor runs 1 task, hosts 2 actors"
    assert down.blocked[2].why == "objects holds the primary copy of 1 object"


def test_a_node_ray_drained_goes_and_its_drain_is_not_repeated() -> None:
    pods = [pod("a"), pod("b")]
    # The drain was accepted: Ray's node is already dead, the Pod still runs.
    nodes = [node("a", alive=False), node("b", tasks=1)]
    down = plan(pods, current=2, target=1, nodes=nodes, drains=[P.drain_result(drain("a", "Succeeded", 0))])
    assert [c.unit.name for c in down.remove] == ["a"] and "drained" in down.remove[0].why
    # After an operator restart the drain Pod may be gone: a dead Ray node says the same.
    down = plan(pods, current=2, target=1, nodes=nodes)
    assert [c.unit.name for c in down.remove] == ["a"]


def test_a_drained_replica_the_group_no_longer_needs_is_replaced() -> None:
    # 3 -> 1 drained b and c; the size went back to 2 while their drains ran. Both raylets are gone (an
    # accepted drain ends them), so both Pods go: c lowers the count, b is replaced by a new Pod.
    pods = [pod("a", created="2026-01-01T00:00:00Z")]
    pods += [pod(n, created="2026-01-02T00:00:00Z") for n in "bc"]
    accepted = [P.drain_result(drain(n, "Succeeded", 0)) for n in "bc"]
    nodes = [node("a"), node("b", alive=False), node("c", alive=False)]
    down = plan(pods, current=3, target=2, nodes=nodes, drains=accepted)
    assert [c.unit.name for c in down.remove] == ["c"] and down.removed == 1
    assert [c.unit.name for c in down.replace] == ["b"] and "new Pod" in down.replace[0].why
    assert down.drain == [] and down.short == 0


def test_a_drained_pod_counts_before_one_that_never_started() -> None:
    pods = [pod("drained"), pod("starting", ready=False, phase="Pending"), pod("idle")]
    accepted = [P.drain_result(drain("drained", "Succeeded", 0))]
    down = plan(pods, current=3, target=2, nodes=[node("idle")], drains=accepted)
    assert [c.unit.name for c in down.remove] == ["drained"] and down.replace == []


def test_a_pod_already_named_for_deletion_is_not_chosen_again() -> None:
    group = {"groupName": "g", "scaleStrategy": {"workersToDelete": ["c"]}}
    pods = [pod("a"), pod("b"), pod("c")]
    accepted = [P.drain_result(drain("c", "Succeeded", 0))]
    units = P.choosable_units(group, pods)
    assert [u.name for u in units] == ["a", "b"]
    # c was removed (3 -> 2) and the RayCluster controller has not deleted it yet: going to 1 drains
    # another worker instead of counting c a second time.
    down = P.plan_scale_down(units, current=2, target=1, nodes=[node("a"), node("b")], drains=accepted)
    assert down.remove == [] and down.replace == [] and len(down.drain) == 1
    # c was replaced (still counted in 3): its replacement, not yet created, is the one dropped.
    down = P.plan_scale_down(units, current=3, target=2, nodes=[node("a"), node("b")], drains=accepted)
    assert (down.free, down.remove, down.drain, down.replace) == (1, [], [], [])
    assert P.drained_replicas(units, accepted) == []


def test_which_replicas_are_drained() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("d")]
    drains = [
        P.drain_result(drain("a", "Succeeded", 0)),
        P.drain_result(drain("b")),  # still running
        P.drain_result(drain("c", "Failed", W.DRAIN_EXIT_REFUSED)),
    ]
    assert [c.unit.name for c in P.drained_replicas(P.group_units(pods), drains)] == ["a"]
    # A multi-host replica is drained when every host is drained or runs nothing in Ray.
    hosts = [
        pod("r1", replica="r"),
        pod("r2", replica="r", ready=False),
        pod("s1", replica="s"),
        pod("s2", replica="s"),
    ]
    drains = [P.drain_result(drain(n, "Succeeded", 0)) for n in ("r1", "s1")]
    assert [c.unit.name for c in P.drained_replicas(P.group_units(hosts, 2), drains)] == ["r"]


def test_an_accepted_drain_is_kept_until_its_worker_is_gone() -> None:
    drains = [
        P.drain_result(drain("kept", "Succeeded", 0)),
        P.drain_result(drain("gone", "Succeeded", 0)),
        P.drain_result(drain("refused", "Failed", W.DRAIN_EXIT_REFUSED)),
        P.drain_result(drain("failed", "Failed", 1)),
        P.drain_result(drain("running")),
    ]
    live = ["kept", "refused", "failed", "running"]
    assert P.drains_to_delete(drains, live) == ["d-gone", "d-refused", "d-failed"]


def test_drains_in_flight_count_and_are_bounded() -> None:
    pods = [pod(n) for n in "abcd"]
    nodes = [node(n) for n in "abcd"]
    down = plan(pods, current=4, target=1, nodes=nodes, drains=[P.drain_result(drain("a"))], max_drains=2)
    assert [u.name for u in down.draining] == ["a"]
    # One drain Pod runs, so one more may start; the third replica waits for the next pass.
    assert len(down.drain) == 1 and down.short == 1 and down.blocked == []


def test_a_refused_drain_blocks_its_worker_for_this_pass() -> None:
    pods = [pod("a"), pod("b")]
    result = P.drain_result(drain("a", "Failed", W.DRAIN_EXIT_REFUSED, "no longer idle"))
    # The state API still says idle (it lags): the raylet's refusal wins.
    down = plan(pods, current=2, target=1, nodes=[node("a"), node("b", actors=1)], drains=[result])
    assert down.remove == [] and down.drain == []
    assert "Ray refused to drain a" in down.blocked[0].why or "Ray refused to drain a" in down.blocked[1].why


def test_without_rays_state_only_pods_that_are_not_ready_go() -> None:
    pods = [pod("ready"), pod("starting", ready=False)]
    down = plan(pods, current=2, target=0, nodes=None, unknown="dashboard down")
    assert [c.unit.name for c in down.remove] == ["starting"]
    assert down.blocked[0].why == "ready: Ray's state is unknown (dashboard down)"


def test_a_ready_pod_ray_does_not_list_is_not_removed() -> None:
    down = plan([pod("new")], current=1, target=0, nodes=[])
    assert down.remove == [] and "Ray lists no node for new" in down.blocked[0].why


def test_newest_idle_workers_go_first() -> None:
    pods = [pod("old", created="2026-01-01T00:00:00Z"), pod("new", created="2026-02-01T00:00:00Z")]
    down = plan(pods, current=2, target=1, nodes=[node("old"), node("new")])
    assert [d.unit.name for d in down.drain] == ["new"]


def test_a_multi_host_replica_goes_only_when_every_host_is_idle() -> None:
    pods = [
        pod("a1", replica="ra"),
        pod("a2", replica="ra"),
        pod("b1", replica="rb"),
        pod("b2", replica="rb"),
    ]
    nodes = [node("a1"), node("a2", tasks=1), node("b1"), node("b2")]
    down = P.plan_scale_down(P.group_units(pods, 2), current=2, target=1, nodes=nodes)
    assert [d.unit.name for d in down.drain] == ["rb"]
    assert sorted(p for p, _ in down.drain[0].nodes) == ["b1", "b2"]


# Status ------------------------------------------------------------------------------------------


def test_status_counts_replicas_and_marks_the_applied_generation() -> None:
    obj = rwg(3, gen=4, observed=3, synced=2)
    s = P.decide_sync(obj, {}, group(3))
    pods = [pod("a"), pod("b", ready=False), pod("c", terminating=True)]
    st = P.worker_group_status(
        obj,
        cluster_name="c",
        group=group(3),
        pods=pods,
        sync=s,
        condition=P.synced_condition(s),
        now=NOW,
        observed=(4, 3),
    )
    assert st["replicas"] == 2 and st["readyReplicas"] == 1
    assert st["selector"] == "ray.io/cluster=c,ray.io/group=g,ray.io/node-type=worker"
    assert (st["observedGeneration"], st["syncedReplicas"]) == (4, 3)
    assert (st["minReplicas"], st["maxReplicas"], st["scaledBy"]) == (0, 10, W.SCALED_BY_SCALE_TARGET)
    assert st["conditions"][0]["status"] == "True"
    # Without `observed`, the marks of the last agreement stay.
    st2 = P.worker_group_status(
        {**obj, "status": st},
        cluster_name="c",
        group=group(3),
        pods=pods,
        sync=s,
        condition=P.synced_condition(s),
        now=datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert (st2["observedGeneration"], st2["syncedReplicas"]) == (4, 3)
    assert st2["conditions"][0]["lastTransitionTime"] == st["conditions"][0]["lastTransitionTime"]


def test_the_condition_says_what_a_scale_down_waits_for() -> None:
    s = P.decide_sync(rwg(1, gen=2, synced=2), {}, group(2))
    down = plan([pod("a"), pod("b")], current=2, target=1, nodes=[node("a", tasks=1), node("b", tasks=2)])
    cond = P.synced_condition(s, down)
    assert (cond.status, cond.reason) == (False, W.REASON_WAITING_FOR_IDLE)
    assert "b runs 2 tasks" in cond.message
    auto = P.decide_sync(rwg(2, synced=2), AUTOSCALED, group(2))
    assert P.synced_condition(auto).reason == W.REASON_AUTOSCALER_OWNS


def test_a_worker_whose_drains_keep_failing_is_held_back() -> None:
    down = plan(
        [pod("a"), pod("b")], current=2, target=1, nodes=[node("a"), node("b")], held={"b": "b failed"}
    )
    assert [d.unit.name for d in down.drain] == ["a"]
    down = plan([pod("b")], current=1, target=0, nodes=[node("b")], held={"b": "b failed"})
    assert down.drain == [] and down.blocked[0].why == "b failed"


_ST = {
    "replicas": 10,
    "readyReplicas": 3,
    "selector": "s",
    "conditions": [{"type": "Synced", "status": "True"}],
}


@pytest.mark.parametrize(
    ("name", "old", "new", "want"),
    [
        ("more ready, short of all", _ST, {**_ST, "readyReplicas": 7}, True),
        ("fewer ready", _ST, {**_ST, "readyReplicas": 2}, True),
        ("all ready", _ST, {**_ST, "readyReplicas": 10}, False),
        ("more Pods, short of the RayCluster's number", {**_ST, "replicas": 4}, {**_ST, "replicas": 6}, True),
        ("Pods reach the number, not all ready", {**_ST, "replicas": 9}, _ST, True),
        ("fewer Pods on the way down", {**_ST, "replicas": 12}, {**_ST, "replicas": 11}, True),
        ("condition changed", _ST, {**_ST, "readyReplicas": 4, "conditions": []}, False),
        ("selector changed", _ST, {**_ST, "readyReplicas": 4, "selector": "t"}, False),
        ("first status, Pods still coming", {}, {**_ST, "replicas": 2, "readyReplicas": 0}, True),
        ("first status, all there and ready", {}, {**_ST, "readyReplicas": 10}, False),
        ("nothing changed", _ST, dict(_ST), False),
    ],
)
def test_pod_counts_on_their_way_are_progress(
    name: str, old: dict[str, Any], new: dict[str, Any], want: bool
) -> None:
    assert P.only_count_progress(old, new, desired=10) is want


def test_a_suspended_group_is_heading_for_no_pods() -> None:
    sync = P.Sync(P.IN_SYNC, 10, 10, 10, W.SCALED_BY_NONE, 0, 20)
    assert P.desired_pods(sync) == 0
    assert P.desired_pods(P.Sync(P.IN_SYNC, 10, 10, 10, W.SCALED_BY_SCALE_TARGET, 0, 20)) == 10
    gone = {**_ST, "replicas": 0, "readyReplicas": 0}
    assert (
        P.only_count_progress({**_ST, "replicas": 1, "readyReplicas": 1}, gone, P.desired_pods(sync)) is False
    )
