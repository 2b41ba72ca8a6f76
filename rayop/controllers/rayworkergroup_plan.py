"""Pure decisions of the RayWorkerGroup controller (docs/scaling.md): which way a replica count flows
between a RayWorkerGroup and its RayCluster, and which workers a scale-down removes.

`decide_sync` compares the RayWorkerGroup's `spec.replicas` (what `kubectl scale` or the HPA asked for)
with the group's `replicas` in the RayCluster:

- Ray's autoscaler owns the group: the cluster's number is copied into the RayWorkerGroup (PULL).
- The RayWorkerGroup changed (its generation is not yet observed): its number, clamped to the group's
  [minReplicas, maxReplicas], goes to the RayCluster (PUSH). A scale-down may take several passes; until it
  is done, the RayWorkerGroup wins over a concurrent edit of the RayCluster.
- Else the RayCluster changed since the two last agreed (`status.syncedReplicas`): someone edited it, and
  its number is copied into the RayWorkerGroup (PULL).
- Else a change of the group's bounds that changes what runs is applied (PUSH).
- A RayService's group now runs on a cluster the RayWorkerGroup never agreed with (an upgrade promoted
  a new cluster): the RayWorkerGroup's number goes to it (PUSH), as after a change of its own.

Numbers are compared as KubeRay runs them (clamped), so a count outside the bounds is never rewritten just
to normalise it.

`plan_scale_down` chooses what goes when the RayCluster must shrink: replicas whose Pods do not exist yet,
then Pods whose Ray node was drained or died, then Pods that never started Ray, then Ray nodes that are
idle (no running task or actor, no primary object copy), each drained in Ray first. A busy node is never
chosen; the plan says what keeps each one busy.

A replica whose Ray node Ray drained always goes, even when the group's size went back up while the drain
ran: the raylet exits after an accepted drain, but `ray start --block` treats that exit (code 0) as
graceful and keeps the container running (python/ray/scripts/scripts.py), so the Pod would stay not Ready, with no
Ray node, until its liveness probe restarts it minutes later. Such a replica is named for deletion
without lowering the group's `replicas`, and the RayCluster controller creates a new Pod in its place
(`drained_replicas`, `ScaleDown.replace`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.api import workergroup as W
from rayop.base.objects import annotations_of, is_terminating, labels_of, meta, name_of, spec_of, status_of
from rayop.base.times import format_time
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders.workergroup import worker_selector
from rayop.controllers.podplan import is_running_and_ready
from rayop.ray.nodes import RayNode, node_of_pod, ran_on_dead_node

PULL: Final = "pull"
PUSH: Final = "push"
IN_SYNC: Final = "in-sync"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Which way the number flows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sync:
    action: str  # PULL, PUSH or IN_SYNC
    replicas: int  # PULL: the new spec.replicas; PUSH: the group's new replicas; IN_SYNC: the group's
    requested: int  # the RayWorkerGroup's spec.replicas
    current: int  # the group's replicas in the RayCluster, as written
    scaled_by: str
    lo: int
    hi: int
    ignored: bool = False  # Ray's autoscaler owns the group, yet spec.replicas was changed

    @property
    def clamped(self) -> bool:
        return not self.lo <= self.requested <= self.hi


def active_cluster(rayservice: Mapping[str, Any]) -> str:
    """The RayCluster a RayService serves from (status.activeServiceStatus.rayClusterName), "" for none."""
    active = status_of(rayservice).get("activeServiceStatus")
    return str((active or {}).get("rayClusterName") or "") if isinstance(active, Mapping) else ""


def handed_over(rwg: Mapping[str, Any], cluster_name: str) -> bool:
    """Whether the RayWorkerGroup's group now runs on another RayCluster than the one it last agreed
    with: a RayService promoted a new cluster. Its status still names the old cluster, or names the new
    one without the marks of an agreement (worker_group_status drops them at the hand-over)."""
    st = status_of(rwg)
    recorded = st.get("rayClusterName")
    if not recorded or not cluster_name:
        return False
    return (
        recorded != cluster_name or st.get("observedGeneration") is None or st.get("syncedReplicas") is None
    )


def decide_sync(
    rwg: Mapping[str, Any],
    cluster_spec: Mapping[str, Any],
    group: Mapping[str, Any],
    cluster_name: str = "",
) -> Sync:
    """`cluster_name` is the RayCluster that runs the group (for a RayService, its active cluster)."""
    requested = _int(spec_of(rwg).get("replicas")) or 0
    current = RS.group_replicas(group)
    lo, hi = RS.replica_bounds(group)
    owner = RS.scaled_by(cluster_spec, group)
    gen = meta(rwg).get("generation")
    observed = status_of(rwg).get("observedGeneration")
    synced = _int(status_of(rwg).get("syncedReplicas"))

    def out(action: str, replicas: int, ignored: bool = False) -> Sync:
        return Sync(action, replicas, requested, current, owner, lo, hi, ignored)

    if owner == W.SCALED_BY_RAY_AUTOSCALER:
        if requested != current:
            return out(PULL, current, ignored=observed is not None and gen != observed)
        return out(IN_SYNC, current)
    effective_now = RS.clamp_replicas(group, current)
    effective_wanted = RS.clamp_replicas(group, requested)
    if handed_over(rwg, cluster_name):
        # The scale target's number outlives the cluster: the new one is brought to it (a safe
        # scale-down when it is bigger), never the other way round.
        if effective_wanted != effective_now:
            return out(PUSH, effective_wanted)
        return out(IN_SYNC, current)
    if observed is None or synced is None:
        # A new RayWorkerGroup starts from the cluster's number: adopt it, write nothing.
        return out(IN_SYNC, current)
    if gen != observed:
        if effective_wanted != effective_now:
            return out(PUSH, effective_wanted)
        return out(IN_SYNC, current)
    if current != synced:
        return out(PULL, current)
    if effective_wanted != effective_now:
        return out(PUSH, effective_wanted)
    return out(IN_SYNC, current)


# A group's replicas as units of Pods -----------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One replica of a group: one Pod, or the numOfHosts Pods of a multi-host replica."""

    name: str
    pods: tuple[Obj, ...]

    @property
    def pod_names(self) -> list[str]:
        return [name_of(p) for p in self.pods]

    @property
    def ready(self) -> bool:
        return all(is_running_and_ready(p) for p in self.pods)

    @property
    def created(self) -> str:
        return max(str(meta(p).get("creationTimestamp") or "") for p in self.pods)

    @property
    def label(self) -> str:
        """How events name it."""
        return self.name if len(self.pods) == 1 else f"replica {self.name} ({', '.join(self.pod_names)})"


def group_units(pods: Iterable[Obj], num_hosts: int = 1) -> list[Unit]:
    """The group's live Pods (terminating ones excluded) as replicas."""
    live = [p for p in pods if not is_terminating(p)]
    if num_hosts <= 1:
        return [Unit(name_of(p), (p,)) for p in live]
    by_replica: dict[str, list[Obj]] = {}
    for p in live:
        key = labels_of(p).get(C.LABEL_WORKER_GROUP_REPLICA_NAME) or name_of(p)
        by_replica.setdefault(key, []).append(p)
    return [Unit(k, tuple(v)) for k, v in by_replica.items()]


def listed_for_deletion(group: Mapping[str, Any]) -> set[str]:
    return set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])


def choosable_units(group: Mapping[str, Any], pods: Iterable[Obj]) -> list[Unit]:
    """The group's replicas a plan may still choose. Pods already named in `workersToDelete` are going
    (no longer counted in `replicas`, or counted for the new Pod that replaces them): choosing one again
    while the RayCluster controller has not deleted it yet would lower the count twice."""
    listed = listed_for_deletion(group)
    return group_units([p for p in pods if name_of(p) not in listed], cl.num_of_hosts(group))


# Drain Pods --------------------------------------------------------------------------------------------

DRAIN_RUNNING: Final = "running"
DRAIN_ACCEPTED: Final = "accepted"
DRAIN_REFUSED: Final = "refused"
DRAIN_FAILED: Final = "failed"


@dataclass(frozen=True)
class DrainResult:
    pod: str  # the drain Pod
    worker: str  # the worker Pod whose Ray node it drains
    node_id: str
    state: str
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state != DRAIN_RUNNING


def drain_result(pod: Mapping[str, Any]) -> DrainResult:
    ann = annotations_of(pod)
    st = status_of(pod)
    phase = st.get("phase")
    term: Mapping[str, Any] = {}
    for cs in st.get("containerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated")
        if isinstance(t, Mapping):
            term = t
    code = _int(term.get("exitCode"))
    text = str(term.get("message") or st.get("message") or "").strip()
    state = DRAIN_RUNNING
    if phase == "Succeeded":
        state = DRAIN_ACCEPTED
    elif phase == "Failed":
        state = DRAIN_REFUSED if code == W.DRAIN_EXIT_REFUSED else DRAIN_FAILED
        if not text:
            text = f"exit code {code}" if code is not None else str(st.get("reason") or "failed")
    return DrainResult(
        pod=name_of(pod),
        worker=str(ann.get(W.ANN_DRAIN_WORKER_POD) or ""),
        node_id=str(ann.get(W.ANN_DRAIN_RAY_NODE_ID) or ""),
        state=state,
        message=text[-500:],
    )


# Choosing what goes --------------------------------------------------------------------------------------

IDLE_WORDS: Final = "no running tasks or actors, no primary object copies"
REPLACE_WORDS: Final = (
    "Ray drained its node for a scale-down the group no longer needs; a drained node takes no more work, "
    "so a new Pod takes its place"
)


@dataclass(frozen=True)
class Choice:
    unit: Unit
    why: str


@dataclass(frozen=True)
class DrainStart:
    unit: Unit
    nodes: tuple[tuple[str, RayNode], ...]  # (worker Pod, its idle Ray node) for each Pod to drain


@dataclass
class ScaleDown:
    need: int  # replicas the RayCluster should lose
    free: int = 0  # replicas without Pods yet, dropped without naming a Pod
    remove: list[Choice] = field(default_factory=list)  # name these in workersToDelete now
    drain: list[DrainStart] = field(default_factory=list)  # start these drains
    # drained replicas beyond `need`: named for deletion while `replicas` keeps them (replaced)
    replace: list[Choice] = field(default_factory=list)
    draining: list[Unit] = field(default_factory=list)  # drains in flight
    blocked: list[Choice] = field(default_factory=list)  # not removable now, busiest first, with why

    @property
    def removed(self) -> int:
        return self.free + len(self.remove)

    @property
    def short(self) -> int:
        """Replicas still to remove after this pass's removals, drains in flight and drains started."""
        return max(0, self.need - self.removed - len(self.draining) - len(self.drain))


def drained_replicas(units: Sequence[Unit], drains: Sequence[DrainResult]) -> list[Choice]:
    """Replicas to replace: Ray accepted the drain of a node of theirs, no drain of theirs is still
    running, and every other Pod of theirs is drained too or not ready (so nothing of theirs runs in Ray).
    Their drain Pods are the record, kept until the worker Pods are gone (`drains_to_delete`)."""
    by_worker = {d.worker: d for d in drains if d.worker}
    out = []
    for u in units:
        states = [by_worker[p].state if p in by_worker else "" for p in u.pod_names]
        if DRAIN_ACCEPTED not in states or DRAIN_RUNNING in states:
            continue
        if all(
            st == DRAIN_ACCEPTED or not is_running_and_ready(p) for st, p in zip(states, u.pods, strict=True)
        ):
            out.append(Choice(u, REPLACE_WORDS))
    return out


def drains_to_delete(drains: Sequence[DrainResult], live_pods: Iterable[str]) -> list[str]:
    """Finished drain Pods whose result has been used: a refusal or failure once reported, an accepted
    drain once its worker Pod is gone or terminating (until then it says the worker must go)."""
    live = set(live_pods)
    return [d.pod for d in drains if d.finished and not (d.state == DRAIN_ACCEPTED and d.worker in live)]


def _pod_ip(pod: Mapping[str, Any]) -> str:
    return str(status_of(pod).get("podIP") or "")


def plan_scale_down(
    units: Sequence[Unit],
    *,
    current: int,
    target: int,
    nodes: Sequence[RayNode] | None,
    unknown: str = "",
    drains: Sequence[DrainResult] = (),
    max_drains: int = 8,
    held: Mapping[str, str] | None = None,
) -> ScaleDown:
    """Which replicas go to bring the group from `current` to `target` replicas.

    `units` are the group's live replicas, `nodes` Ray's nodes (None when Ray could not be asked, with
    `unknown` saying why: then only Pods that are not ready may go), `drains` the results of this group's
    drain Pods, `held` the worker Pods not to drain again yet (a recent drain failed), with why.
    """
    held = held or {}
    plan = ScaleDown(need=max(0, current - target))
    need = plan.need
    if need == 0:
        return plan
    # Replicas whose Pods KubeRay has not created yet go first, and cost nothing. (A Pod created a moment
    # ago and not yet in our cache is then the one KubeRay finds extra: the newest, not ready, no Ray node.)
    plan.free = min(need, max(0, current - len(units)))
    need -= plan.free
    if need == 0:
        return plan

    by_worker = {d.worker: d for d in drains if d.worker}
    never_started: list[Choice] = []  # not ready: nothing of theirs runs in Ray
    drained: list[Choice] = []  # Ray accepted the drain of every node they ran
    idle: list[DrainStart] = []
    in_flight: list[Unit] = []
    blocked: list[tuple[int, Choice]] = []
    drain_pods_running = sum(1 for d in drains if not d.finished)
    for u in units:
        to_drain: list[tuple[str, RayNode]] = []
        busy: list[str] = []
        load = 0
        was_drained = waiting = unknown_pod = False
        for p in u.pods:
            pname = name_of(p)
            d = by_worker.get(pname)
            if d is not None and d.state == DRAIN_ACCEPTED:
                was_drained = True
                continue
            if d is not None and d.state == DRAIN_RUNNING:
                waiting = True
                continue
            if d is not None and d.state == DRAIN_REFUSED:
                busy.append(f"Ray refused to drain {pname}: {d.message or 'the node is no longer idle'}")
                load += 1
                continue
            if d is not None and d.state == DRAIN_FAILED:
                busy.append(f"draining {pname} failed: {d.message}")
                continue
            if pname in held and is_running_and_ready(p):
                busy.append(held[pname])
                continue
            if not is_running_and_ready(p):
                # No Ray work can be on a Pod that is not ready: its raylet is not up, or gone.
                continue
            if nodes is None:
                unknown_pod = True
                continue
            node = node_of_pod(nodes, pname, _pod_ip(p))
            if node is None:
                if ran_on_dead_node(nodes, pname):
                    was_drained = True  # its Ray node is gone: drained earlier, or it died
                else:
                    busy.append(f"Ray lists no node for {pname} yet")
                continue
            if node.idle:
                to_drain.append((pname, node))
            else:
                busy.append(f"{pname} {_busy_words(node)}")
                load += node.load
        if busy:
            blocked.append((load, Choice(u, "; ".join(busy))))
        elif unknown_pod:
            blocked.append((0, Choice(u, f"{u.label}: Ray's state is unknown ({unknown})")))
        elif waiting:
            in_flight.append(u)
        elif to_drain:
            idle.append(DrainStart(u, tuple(to_drain)))
        elif was_drained:
            drained.append(Choice(u, f"Ray drained its node, or it is gone (idle: {IDLE_WORDS})"))
        else:
            never_started.append(Choice(u, "it runs nothing in Ray (Pod not ready)"))

    # Pods whose Ray node is gone go before those that never started Ray (which may be about to join);
    # newest first within each. Drained replicas beyond the need are replaced.
    def newest(choices: list[Choice]) -> list[Choice]:
        return sorted(choices, key=lambda c: (c.unit.created, c.unit.name), reverse=True)

    plan.remove = (newest(drained) + newest(never_started))[:need]
    need -= len(plan.remove)
    chosen = {c.unit.name for c in plan.remove}
    plan.replace = [c for c in drained_replicas(units, drains) if c.unit.name not in chosen]
    plan.draining = in_flight[:need]
    need -= len(plan.draining)
    slots = max(0, max_drains - drain_pods_running)
    for start in sorted(idle, key=lambda s: (s.unit.created, s.unit.name), reverse=True):
        if need == 0 or len(start.nodes) > slots:
            break
        plan.drain.append(start)
        slots -= len(start.nodes)
        need -= 1
    # Blocked replicas, busiest first: they are what the user must wait for (never removed).
    plan.blocked = [c for _, c in sorted(blocked, key=lambda lc: -lc[0])]
    return plan


def _busy_words(node: RayNode) -> str:
    parts = []
    if node.tasks:
        parts.append(f"runs {node.tasks} task{'s' if node.tasks != 1 else ''}")
    if node.actors:
        parts.append(f"hosts {node.actors} actor{'s' if node.actors != 1 else ''}")
    if node.primary_copies:
        n = node.primary_copies
        parts.append(f"holds the primary cop{'ies' if n != 1 else 'y'} of {n} object{'s' if n != 1 else ''}")
    return ", ".join(parts)


# Status ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    status: bool
    reason: str
    message: str


def synced_condition(sync: Sync, down: ScaleDown | None = None) -> Condition:
    if sync.scaled_by == W.SCALED_BY_RAY_AUTOSCALER:
        return Condition(
            True,
            W.REASON_AUTOSCALER_OWNS,
            "Ray's autoscaler sizes this group; spec.replicas mirrors the RayCluster",
        )
    if sync.action != PUSH:
        if sync.scaled_by == W.SCALED_BY_NONE:
            return Condition(True, W.REASON_SUSPENDED, "the cluster or the group is suspended")
        return Condition(True, W.REASON_IN_SYNC, f"the RayCluster asks for {sync.current} replicas")
    if sync.replicas > sync.current:
        return Condition(
            False, W.REASON_SCALING_UP, f"scaling from {sync.current} to {sync.replicas} replicas"
        )
    if down is not None and down.short and down.blocked:
        return Condition(
            False,
            W.REASON_WAITING_FOR_IDLE,
            f"{down.short} more replica(s) to remove; waiting: {down.blocked[0].why}",
        )
    if down is not None and (down.drain or down.draining):
        return Condition(False, W.REASON_DRAINING, "draining idle Ray nodes before their Pods go")
    return Condition(False, W.REASON_SCALING_DOWN, f"scaling from {sync.current} to {sync.replicas} replicas")


def worker_group_status(
    rwg: Mapping[str, Any],
    *,
    cluster_name: str,
    group: Mapping[str, Any],
    pods: Iterable[Obj],
    sync: Sync,
    condition: Condition,
    now: datetime,
    observed: tuple[int, int] | None = None,
) -> Obj:
    """The RayWorkerGroup's status. `observed` = (generation, cluster replicas) once the two agree, which
    marks that generation applied; otherwise the previous marks are kept."""
    old = status_of(rwg)
    units = group_units(pods, cl.num_of_hosts(group))
    status: Obj = {
        "replicas": len(units),
        "readyReplicas": sum(1 for u in units if u.ready),
        "selector": worker_selector(cluster_name, str(group.get("groupName") or "")),
        "rayClusterName": cluster_name,
        "minReplicas": sync.lo,
        "maxReplicas": sync.hi,
        "scaledBy": sync.scaled_by,
    }
    if observed is not None:
        status["observedGeneration"], status["syncedReplicas"] = observed
    elif old.get("rayClusterName") in (None, cluster_name):
        # Marks of an agreement with another cluster (before a RayService's hand-over) are dropped.
        for k in ("observedGeneration", "syncedReplicas"):
            if old.get(k) is not None:
                status[k] = old[k]
    prev = next((c for c in old.get("conditions") or [] if c.get("type") == W.COND_SYNCED), None)
    value = "True" if condition.status else "False"
    cond: Obj = {
        "type": W.COND_SYNCED,
        "status": value,
        "reason": condition.reason,
        "message": condition.message,
        "observedGeneration": meta(rwg).get("generation") or 0,
        "lastTransitionTime": format_time(now),
    }
    if prev is not None and prev.get("status") == value and prev.get("lastTransitionTime"):
        cond["lastTransitionTime"] = prev["lastTransitionTime"]
    status["conditions"] = [cond]
    return status


def desired_pods(sync: Sync) -> int:
    """How many replicas the group is heading for: the RayCluster's number, none while suspended."""
    return 0 if sync.scaled_by == W.SCALED_BY_NONE else sync.current


def only_count_progress(old: Mapping[str, Any], new: Mapping[str, Any], desired: int) -> bool:
    """Whether a RayWorkerGroup's new status differs from the old only by its Pod counts (`replicas`,
    `readyReplicas`) on the way to `desired` replicas all ready: progress a writer may batch while Pods
    are created, deleted or turn ready one by one. Arriving there is news, as is a change of anything
    else (the condition, the selector, the applied generation). A first status is progress too while
    the counts are short of `desired`: the selector it carries is wanted at once only by an HPA, which
    sizes from the /scale spec (the RayCluster's number) and counts Pods by that selector itself.
    Holding these writes while the RayCluster controller creates the Pods keeps the API server's work
    on the Pods (bench/kuberay_peer.py counts the writes)."""
    replicas = _int(new.get("replicas")) or 0
    arrived = replicas == desired and (_int(new.get("readyReplicas")) or 0) == replicas
    if arrived:
        return False
    if not old:
        return True
    counts = ("replicas", "readyReplicas")
    rest_old = {k: v for k, v in old.items() if k not in counts}
    rest_new = {k: v for k, v in new.items() if k not in counts}
    return rest_old == rest_new and any(old.get(k) != new.get(k) for k in counts)
