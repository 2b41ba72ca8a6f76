"""What the RayCluster reconciler should do with one worker group's Pods (KubeRay `reconcilePods`,
`ray-operator/controllers/ray/raycluster_controller.go`; docs/compatibility.md#pods).

Pure planning: the current Pods (from the cache) and the group spec go in, a plan of deletions and
creations comes out. The reconciler executes the plan; keeping the decision apart makes every branch
of KubeRay's algorithm testable without an API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rayop.api import constants as C

# KubeRay names multi-host replicas with k8s.io/apimachinery's rand.String alphabet (base.names).
from rayop.base.names import random_suffix
from rayop.base.objects import is_terminating, labels_of, name_of
from rayop.base.types import Obj

ShouldDelete = Callable[[Obj], tuple[bool, str]]


@dataclass(frozen=True)
class PodToCreate:
    """One worker Pod to create, with the indexing labels KubeRay's RayMultiHostIndexing gate assigns."""

    replica_index: int | None = None
    replica_name: str | None = None
    host_index: int | None = None


@dataclass
class GroupPlan:
    """Deletions first, then creations. `stop` means: after the deletions, end this reconcile with an
    error (KubeRay returns an error after deleting unhealthy Pods so nothing is created in the same pass)."""

    delete: list[tuple[str, str]] = field(default_factory=list)  # (pod name, reason)
    create: list[PodToCreate] = field(default_factory=list)
    delete_all: bool = False  # suspended group: one deletecollection for the group
    stop: str = ""
    note: str = ""


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    st = pod.get("status") or {}
    if st.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])


def _replica_index(pod: Mapping[str, Any]) -> int | None:
    raw = labels_of(pod).get(C.LABEL_WORKER_GROUP_REPLICA_INDEX)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def free_indexes(used: Iterable[int | None], count: int) -> list[int]:
    """The `count` smallest non-negative integers not in `used` (KubeRay fills gaps first)."""
    taken = {i for i in used if i is not None}
    out: list[int] = []
    i = 0
    while len(out) < count:
        if i not in taken:
            out.append(i)
        i += 1
    return out


def _deletion_order(pods: list[Obj]) -> list[Obj]:
    # KubeRay deletes the first Pods in cache order ("random" deletion). We keep that spirit but
    # prefer Pods that do no work yet: not-ready first, then the newest, so scale-down never kills a
    # ready worker while a pending one exists.
    def key(p: Obj) -> tuple[int, str, str]:
        ts = str(p.get("metadata", {}).get("creationTimestamp") or "")
        inverted = "".join(chr(0x10FFFF - ord(ch)) for ch in ts)
        return (1 if is_running_and_ready(p) else 0, inverted, name_of(p))

    return sorted(pods, key=key)


def plan_worker_group(
    group: Mapping[str, Any],
    pods: list[Obj],
    *,
    desired_pods: int,
    autoscaling: bool,
    random_delete: bool,
    multi_host_indexing: bool,
    should_delete: ShouldDelete,
    new_replica_name: Callable[[str], str] | None = None,
) -> GroupPlan:
    """Plan one worker group (docs/compatibility.md#pods, steps 4-6). `pods` are the group's Pods from the
    cache, terminating ones included (they are ignored here, as Ray's autoscaler ignores them)."""
    name = str(group.get("groupName", ""))
    if group.get("suspend") is True:
        return GroupPlan(delete_all=True, note=f"worker group {name} is suspended")

    active = [p for p in pods if not is_terminating(p)]
    num_hosts = int(group.get("numOfHosts") or 1)
    if num_hosts <= 0:
        num_hosts = 1
    to_delete_names = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
    # Random deletion is never done behind the autoscaler's back: it is the only decider
    # (docs/compatibility.md#ray-autoscaler).
    may_scale_down = not autoscaling or random_delete

    if num_hosts > 1 and multi_host_indexing:
        return _plan_multi_host(
            name,
            active,
            num_hosts=num_hosts,
            desired_pods=desired_pods,
            to_delete_names=to_delete_names,
            may_scale_down=may_scale_down,
            should_delete=should_delete,
            new_replica_name=new_replica_name or (lambda g: f"{g}-{random_suffix()}"),
        )

    plan = GroupPlan()
    for p in active:
        dele, reason = should_delete(p)
        if dele:
            plan.delete.append((name_of(p), reason))
    if plan.delete:
        plan.stop = f"delete {len(plan.delete)} unhealthy worker Pods"
        return plan

    deleted: set[str] = set()
    for p in active:
        if name_of(p) in to_delete_names:
            plan.delete.append((name_of(p), "named in scaleStrategy.workersToDelete"))
            deleted.add(name_of(p))
    remaining = [p for p in active if name_of(p) not in deleted]
    diff = desired_pods - len(remaining)
    if diff > 0:
        if multi_host_indexing:
            idx = free_indexes((_replica_index(p) for p in remaining), diff)
            plan.create = [PodToCreate(replica_index=i) for i in idx]
        else:
            plan.create = [PodToCreate() for _ in range(diff)]
    elif diff < 0:
        if may_scale_down:
            for p in _deletion_order(remaining)[:-diff]:
                plan.delete.append((name_of(p), f"scale down to {desired_pods} Pods"))
        else:
            plan.note = (
                "Random Pod deletion is disabled for the cluster. "
                "The only decision-maker for Pod deletions is Autoscaler."
            )
    return plan


def _plan_multi_host(
    name: str,
    active: list[Obj],
    *,
    num_hosts: int,
    desired_pods: int,
    to_delete_names: set[str],
    may_scale_down: bool,
    should_delete: ShouldDelete,
    new_replica_name: Callable[[str], str],
) -> GroupPlan:
    plan = GroupPlan()
    replicas: dict[str, list[Obj]] = {}
    for p in active:
        rname = labels_of(p).get(C.LABEL_WORKER_GROUP_REPLICA_NAME) or f"\x00{name_of(p)}"
        replicas.setdefault(rname, []).append(p)

    def drop(rname: str, reason: str) -> None:
        for p in replicas.pop(rname):
            plan.delete.append((name_of(p), reason))

    # A replica is one unit of work for Ray (e.g. one TPU slice): a partial replica is useless, so any
    # damage takes down the whole replica and it is recreated whole.
    for rname in list(replicas):
        if rname.startswith("\x00") or len(replicas[rname]) != num_hosts:
            drop(
                rname,
                f"multi-host replica {rname.lstrip(chr(0))} has {len(replicas[rname])}/{num_hosts} hosts",
            )
    for rname in list(replicas):
        bad = [r for p in replicas[rname] for d, r in [should_delete(p)] if d]
        if bad:
            drop(rname, bad[0])
    for rname in list(replicas):
        if any(name_of(p) in to_delete_names for p in replicas[rname]):
            drop(rname, "named in scaleStrategy.workersToDelete")
    if plan.delete:
        plan.stop = f"delete {len(plan.delete)} Pods of broken or removed multi-host replicas in group {name}"
        return plan

    desired_replicas = desired_pods // num_hosts
    diff = desired_replicas - len(replicas)
    if diff > 0:
        used = [_replica_index(ps[0]) for ps in replicas.values()]
        for idx in free_indexes(used, diff):
            rname = new_replica_name(name)
            plan.create.extend(
                PodToCreate(replica_index=idx, replica_name=rname, host_index=h) for h in range(num_hosts)
            )
    elif diff < 0:
        if may_scale_down:
            # Newest replicas go first, like single-host groups.
            order = sorted(
                replicas,
                key=lambda r: (
                    all(is_running_and_ready(p) for p in replicas[r]),
                    -(_replica_index(replicas[r][0]) or 0),
                ),
            )
            for rname in order[:-diff]:
                drop(rname, f"scale down to {desired_replicas} replicas")
        else:
            plan.note = "Random replica deletion is disabled: the autoscaler decides which replicas go."
    return plan
