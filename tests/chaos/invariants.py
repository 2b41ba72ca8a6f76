"""The invariants the campaign checks after every fault, read from the API server and from Ray.

Each check looks at one consistent read of the namespace and returns the violations it sees; the campaign
polls them with a deadline per fault kind (a fault may leave the system briefly inconsistent: what must
hold is that it becomes consistent again, by itself, in time). The rules are written from the outside,
from what a user can see, not by calling the operator's own code:

- raycluster-pods: a RayCluster has one head Pod (none when suspended) and exactly the desired workers per
  group (`replicas` clamped to `[minReplicas, maxReplicas]`, none when suspended); no worker of a group
  the spec no longer has; no Pod named in `workersToDelete` still alive.
- raycluster-status: `.status.state` is `ready` (or `suspended`) and the worker counts in the status are
  those of the Pods.
- orphan: every Ray Pod, Service, Job, RayWorkerGroup and RayCluster that a Ray object created is owned
  (controller reference) by an object that exists with that uid; every Ray Pod has such an owner.
- rayjob-submissions: Ray knows at most one job per RayJob attempt (each attempt's cluster lists one
  submission id at most, and a RayJob's attempts list at most one each).
- rayjob-status: a RayJob's `jobStatus` is the status Ray reports for its `jobId`; its failures stay
  within `backoffLimit + 1`.
- rayjob-cluster: earlier attempts' clusters are gone; a finished RayJob's cluster is gone after its TTL
  with `shutdownAfterJobFinishes`, and still there without it.
- rayservice-clusters: a RayService has at most its active and its pending cluster (older ones are
  deleted after `rayClusterDeletionDelaySeconds`).
- rayservice-serving: the RayService is Ready with no pending cluster, its serve Service selects the
  active cluster, and Ray reports every application of that cluster RUNNING.
- terminating: nothing stays terminating (deletionTimestamp set, finalizers pending) longer than its
  rules allow.

On real Ray (tests/chaos/ray_segment.py) also:

- ray-pods-ready: every Ray Pod of a cluster is Running and Ready (a restarted head is not back until its
  probes say so).
- ray-nodes: Ray reports one ALIVE node per Ray Pod.
- gcs-ft-state: a GCS fault-tolerant cluster still lists, SUCCEEDED, the job it ran before any fault.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS, RAYSERVICES, RAYWORKERGROUPS
from rayop.base.times import parse_time
from rayop.runtime.client import JOBS, PODS, SERVICES, ApiClient

Obj = dict[str, Any]

RAY_KINDS = {C.KIND_RAYCLUSTER, C.KIND_RAYJOB, C.KIND_RAYSERVICE, "Job", "RayWorkerGroup"}

# Serve application statuses of a cluster's Ray, by (namespace, cluster): None when Ray cannot be asked.
ServeApps = Callable[[str, str], Awaitable[dict[str, str] | None]]
# Submission ids a cluster's Ray knows, with their status: {sid: status}; None when it cannot be asked.
RayJobs = Callable[[str, str], Awaitable[dict[str, str] | None]]


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} {self.subject}: {self.detail}"


@dataclass
class Snapshot:
    clusters: list[Obj]
    pods: list[Obj]
    jobs: list[Obj]  # RayJobs
    services: list[Obj]  # RayServices
    k8s_services: list[Obj]
    batch_jobs: list[Obj]
    workergroups: list[Obj]
    at: float = field(default_factory=time.time)


def alive(o: Obj) -> bool:
    return not o["metadata"].get("deletionTimestamp")


def labels(o: Obj) -> dict[str, str]:
    return dict(o["metadata"].get("labels") or {})


def desired(g: Obj) -> int:
    r = int(g.get("replicas") or 0)
    lo, hi = int(g.get("minReplicas") or 0), g.get("maxReplicas")
    r = max(r, lo)
    if hi is not None:
        r = min(r, int(hi))
    return r * int(g.get("numOfHosts") or 1)


def controller(o: Obj) -> Obj | None:
    for ref in o["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


async def snapshot(kube: ApiClient, ns: str) -> Snapshot:
    return Snapshot(
        clusters=(await kube.list(RAYCLUSTERS, ns))["items"],
        pods=(await kube.list(PODS, ns))["items"],
        jobs=(await kube.list(RAYJOBS, ns))["items"],
        services=(await kube.list(RAYSERVICES, ns))["items"],
        k8s_services=(await kube.list(SERVICES, ns))["items"],
        batch_jobs=(await kube.list(JOBS, ns))["items"],
        workergroups=(await kube.list(RAYWORKERGROUPS, ns))["items"],
    )


def ray_pods(pods: list[Obj], cluster: str) -> list[Obj]:
    return [
        p
        for p in pods
        if alive(p)
        and labels(p).get(C.LABEL_CLUSTER) == cluster
        and labels(p).get(C.LABEL_NODE_TYPE) in (C.NODE_TYPE_HEAD, C.NODE_TYPE_WORKER)
    ]


def running_ready(p: Obj) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


def check_ray_pods_ready(s: Snapshot, cluster: str) -> list[Violation]:
    """On real Ray the Pods' readiness is Ray's (the head's probes ask its GCS and dashboard): the pod
    counts alone would pass while a restarted head is still starting."""
    waiting = sorted(p["metadata"]["name"] for p in ray_pods(s.pods, cluster) if not running_ready(p))
    if waiting:
        return [Violation("ray-pods-ready", cluster, f"Ray Pods not Running and Ready: {waiting}")]
    return []


def check_ray_nodes(cluster: str, pods: int, alive_nodes: int) -> list[Violation]:
    """Ray agrees with the Pods: a killed raylet is marked dead, a restarted one joined again."""
    if alive_nodes != pods:
        return [
            Violation("ray-nodes", cluster, f"Ray reports {alive_nodes} alive nodes, {pods} Ray Pods run")
        ]
    return []


def check_kept_job(cluster: str, submission_id: str, known: dict[str, str]) -> list[Violation]:
    """GCS fault tolerance kept the cluster's state through a head restart: the job it ran before is still
    known, with the status it ended with. (Without fault tolerance a new head knows no jobs.)"""
    status = known.get(submission_id)
    if status is None:
        return [
            Violation(
                "gcs-ft-state",
                cluster,
                f"Ray no longer knows job {submission_id} (it lists {sorted(known)}): the head came back "
                "without its state",
            )
        ]
    if status != "SUCCEEDED":
        return [Violation("gcs-ft-state", cluster, f"job {submission_id} is {status}, it had SUCCEEDED")]
    return []


def check_clusters(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []
    for rc in s.clusters:
        if not alive(rc):
            continue
        name = rc["metadata"]["name"]
        spec = rc.get("spec") or {}
        suspended = bool(spec.get("suspend"))
        pods = ray_pods(s.pods, name)
        heads = [p for p in pods if labels(p)[C.LABEL_NODE_TYPE] == C.NODE_TYPE_HEAD]
        workers = [p for p in pods if labels(p)[C.LABEL_NODE_TYPE] == C.NODE_TYPE_WORKER]
        want_heads = 0 if suspended else 1
        if len(heads) != want_heads:
            out.append(Violation("raycluster-pods", name, f"{len(heads)} head Pods, want {want_heads}"))
        groups = {str(g.get("groupName")): g for g in spec.get("workerGroupSpecs") or []}
        total = 0
        for gname, g in groups.items():
            want = 0 if suspended or g.get("suspend") else desired(g)
            total += 0 if suspended else desired(g)
            have = [p for p in workers if labels(p).get(C.LABEL_GROUP) == gname]
            if len(have) != want:
                out.append(
                    Violation("raycluster-pods", f"{name}/{gname}", f"{len(have)} workers, want {want}")
                )
            named = set((g.get("scaleStrategy") or {}).get("workersToDelete") or [])
            still = sorted(p["metadata"]["name"] for p in have if p["metadata"]["name"] in named)
            if still:
                out.append(
                    Violation(
                        "raycluster-pods", f"{name}/{gname}", f"named in workersToDelete yet alive: {still}"
                    )
                )
        stray = sorted({labels(p).get(C.LABEL_GROUP, "") for p in workers} - set(groups))
        if stray:
            out.append(Violation("raycluster-pods", name, f"workers of groups not in the spec: {stray}"))
        st = rc.get("status") or {}
        want_state = C.STATE_SUSPENDED if suspended else C.STATE_READY
        if st.get("state") != want_state:
            out.append(
                Violation("raycluster-status", name, f"state {st.get('state')!r}, want {want_state!r}")
            )
        if not suspended:
            ready = sum(1 for p in workers if running_ready(p))
            running = sum(1 for p in workers if (p.get("status") or {}).get("phase") == "Running")
            got = (
                int(st.get("readyWorkerReplicas") or 0),
                int(st.get("availableWorkerReplicas") or 0),
                int(st.get("desiredWorkerReplicas") or 0),
            )
            if got != (ready, running, total):
                out.append(
                    Violation(
                        "raycluster-status",
                        name,
                        f"status says ready/available/desired workers {got}, the Pods say {(ready, running, total)}",
                    )
                )
    return out


def check_owners(s: Snapshot) -> list[Violation]:
    out: list[Violation] = []
    uids: dict[tuple[str, str], str] = {}
    for kind, items in (
        (C.KIND_RAYCLUSTER, s.clusters),
        (C.KIND_RAYJOB, s.jobs),
        (C.KIND_RAYSERVICE, s.services),
        ("Job", s.batch_jobs),
        ("RayWorkerGroup", s.workergroups),
    ):
        for o in items:
            uids[(kind, o["metadata"]["name"])] = o["metadata"]["uid"]
    children = [
        ("Pod", s.pods),
        ("Service", s.k8s_services),
        ("Job", s.batch_jobs),
        ("RayCluster", s.clusters),
        ("RayWorkerGroup", s.workergroups),
    ]
    for kind, items in children:
        for o in items:
            md = o["metadata"]
            ref = controller(o)
            is_ray_pod = kind == "Pod" and C.LABEL_CLUSTER in labels(o)
            if ref is None:
                if is_ray_pod:
                    out.append(
                        Violation("orphan", f"Pod {md['name']}", "a Ray Pod without a controller owner")
                    )
                continue
            if ref.get("kind") not in RAY_KINDS:
                continue
            have = uids.get((str(ref.get("kind")), str(ref.get("name"))))
            if have != ref.get("uid"):
                what = "is gone" if have is None else "was replaced (other uid)"
                out.append(
                    Violation(
                        "orphan",
                        f"{kind} {md['name']}",
                        f"its owner {ref.get('kind')} {ref.get('name')} {what}",
                    )
                )
    return out


def check_terminating(s: Snapshot, allowance: float) -> list[Violation]:
    out = []
    for kind, items in (
        ("RayCluster", s.clusters),
        ("RayJob", s.jobs),
        ("RayService", s.services),
        ("Pod", s.pods),
        ("Job", s.batch_jobs),
    ):
        for o in items:
            ts = parse_time(o["metadata"].get("deletionTimestamp"))
            if ts is None:
                continue
            age = s.at - ts.timestamp()
            if age > allowance:
                fin = o["metadata"].get("finalizers") or []
                out.append(
                    Violation(
                        "terminating",
                        f"{kind} {o['metadata']['name']}",
                        f"terminating for {age:.0f} s (finalizers {fin})",
                    )
                )
    return out


async def check_jobs(s: Snapshot, ray_jobs: RayJobs, ns: str, slack: float) -> list[Violation]:
    out: list[Violation] = []
    by_owner: dict[str, list[Obj]] = {}
    for rc in s.clusters:
        ref = controller(rc)
        if ref and ref.get("kind") == C.KIND_RAYJOB:
            by_owner.setdefault(str(ref.get("name")), []).append(rc)
    for rj in s.jobs:
        if not alive(rj):
            continue
        name = rj["metadata"]["name"]
        spec, st = rj.get("spec") or {}, rj.get("status") or {}
        dep, jid, cname = st.get("jobDeploymentStatus", ""), st.get("jobId", ""), st.get("rayClusterName", "")
        failed = int(st.get("failed") or 0)
        if failed > int(spec.get("backoffLimit") or 0) + 1:
            out.append(
                Violation(
                    "rayjob-status",
                    name,
                    f"{failed} failed attempts with backoffLimit {spec.get('backoffLimit')}",
                )
            )
        if cname:
            known = await ray_jobs(ns, cname)
            if known is not None:
                if len(known) > 1:
                    out.append(
                        Violation(
                            "rayjob-submissions",
                            name,
                            f"Ray on {cname} lists {len(known)} jobs: {sorted(known)}",
                        )
                    )
                judged = not (dep == "Failed" and st.get("reason") != "AppFailed")
                if jid and st.get("jobStatus") and known.get(jid) != st.get("jobStatus") and judged:
                    out.append(
                        Violation(
                            "rayjob-status",
                            name,
                            f"jobStatus {st.get('jobStatus')!r}, Ray says {known.get(jid)!r} for {jid}",
                        )
                    )
        for rc in by_owner.get(name, []):
            if rc["metadata"]["name"] != cname and alive(rc):
                out.append(
                    Violation(
                        "rayjob-cluster",
                        name,
                        f"cluster {rc['metadata']['name']} of an earlier attempt still there",
                    )
                )
        if dep in ("Complete", "Failed") and cname:
            end = parse_time(st.get("endTime"))
            exists = any(rc["metadata"]["name"] == cname and alive(rc) for rc in s.clusters)
            if spec.get("shutdownAfterJobFinishes"):
                ttl = float(spec.get("ttlSecondsAfterFinished") or 0)
                if exists and end is not None and s.at - end.timestamp() > ttl + slack:
                    out.append(
                        Violation(
                            "rayjob-cluster",
                            name,
                            f"cluster {cname} still there {s.at - end.timestamp():.0f} s after the end (TTL {ttl:.0f} s)",
                        )
                    )
            elif not exists:
                out.append(
                    Violation(
                        "rayjob-cluster", name, f"cluster {cname} gone without shutdownAfterJobFinishes"
                    )
                )
    return out


async def check_services(s: Snapshot, serve_apps: ServeApps, ns: str) -> list[Violation]:
    out: list[Violation] = []
    for rs in s.services:
        if not alive(rs):
            continue
        name = rs["metadata"]["name"]
        st = rs.get("status") or {}
        active = (st.get("activeServiceStatus") or {}).get("rayClusterName", "")
        pending = (st.get("pendingServiceStatus") or {}).get("rayClusterName", "")
        mine = [
            rc["metadata"]["name"]
            for rc in s.clusters
            if alive(rc)
            and labels(rc).get(C.LABEL_ORIGINATED_FROM_CR_NAME) == name
            and labels(rc).get(C.LABEL_ORIGINATED_FROM_CRD) == C.KIND_RAYSERVICE
        ]
        extra = sorted(set(mine) - {active, pending})
        if extra:
            out.append(
                Violation(
                    "rayservice-clusters",
                    name,
                    f"clusters besides active {active!r} and pending {pending!r}: {extra}",
                )
            )
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
        )
        if not ready or pending or not active:
            out.append(
                Violation(
                    "rayservice-serving", name, f"Ready={ready}, active {active!r}, pending {pending!r}"
                )
            )
            continue
        svc = next((x for x in s.k8s_services if x["metadata"]["name"] == f"{name}-serve-svc"), None)
        selected = ((svc or {}).get("spec") or {}).get("selector", {}).get(C.LABEL_CLUSTER, "")
        if selected != active:
            out.append(
                Violation(
                    "rayservice-serving", name, f"serve Service selects {selected!r}, active is {active!r}"
                )
            )
        apps = await serve_apps(ns, active)
        if apps is not None and (not apps or any(v != "RUNNING" for v in apps.values())):
            out.append(Violation("rayservice-serving", name, f"applications on {active}: {apps}"))
    return out


@dataclass
class Checker:
    kube: ApiClient
    namespaces: list[str]
    serve_apps: ServeApps
    ray_jobs: RayJobs
    terminating_allowance: float = 90.0
    ttl_slack: float = 20.0
    extra: list[Callable[[Snapshot, str], Awaitable[list[Violation]]]] = field(default_factory=list)

    async def check(self) -> list[Violation]:
        out: list[Violation] = []
        for ns in self.namespaces:
            s = await snapshot(self.kube, ns)
            out += check_clusters(s)
            out += check_owners(s)
            out += check_terminating(s, self.terminating_allowance)
            out += await check_jobs(s, self.ray_jobs, ns, self.ttl_slack)
            out += await check_services(s, self.serve_apps, ns)
            for fn in self.extra:
                out += await fn(s, ns)
        return out
