"""What each page shows, computed from cached objects: pure functions, no I/O, no clock.

Every reader is total (a malformed field reads as empty): the view must render whatever a user wrote while
the webhook was off. Problems are ranked so the overview can put them first: 2 is an error (the object
failed or cannot work as written), 1 a warning (not yet where it should be), 0 nothing to see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rayop.api import constants as C
from rayop.base.objects import labels_of, meta, spec_of, status_of
from rayop.base.times import parse_timestamp
from rayop.builders import cluster as cl
from rayop.builders.pod import is_gpu_resource_key
from rayop.builders.quantity import Quantity, QuantityError, canonical, parse_quantity
from rayop.builders.status import is_running_and_ready, pod_resources
from rayop.ui.fieldmanagers import FieldManager
from rayop.ui.history import ScaleChange

ERROR = 2
WARNING = 1

_EMPTY: Mapping[str, Any] = {}


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else _EMPTY


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class Problem:
    severity: int
    text: str


def worst(problems: Iterable[Problem]) -> int:
    return max((p.severity for p in problems), default=0)


@dataclass(frozen=True)
class Resources:
    """Amounts as Kubernetes writes them ("4", "500m", "8Gi"); "" when none."""

    cpu: str = ""
    gpu: str = ""
    memory: str = ""


def _fmt(q: Quantity | None) -> str:
    return canonical(q) if q is not None and not q.is_zero() else ("0" if q is not None else "")


def group_resources(group: Mapping[str, Any], count: int) -> Resources:
    """What `count` Pods of a group ask for (requests, limits filling the gaps), summed over containers."""
    per_pod = pod_resources(_map(_map(group.get("template")).get("spec")))
    gpu: Quantity | None = None
    for name in sorted(per_pod):
        if is_gpu_resource_key(name):
            gpu = per_pod[name] if gpu is None else gpu + per_pod[name]
    cpu, mem = per_pod.get("cpu"), per_pod.get("memory")
    return Resources(
        _fmt(cpu * count) if cpu is not None else "",
        _fmt(gpu * count) if gpu is not None else "",
        _fmt(mem * count) if mem is not None else "",
    )


def _status_quantity(status: Mapping[str, Any], key: str) -> str:
    raw = status.get(key)
    if raw in (None, ""):
        return ""
    try:
        return canonical(parse_quantity(raw))
    except QuantityError:
        return _str(raw)


# Pods -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodRow:
    name: str
    group: str
    node_type: str
    phase: str
    ready: bool
    restarts: int
    reason: str
    ip: str
    node: str
    created: str
    terminating: bool

    @property
    def problem(self) -> Problem | None:
        if self.phase == "Failed":
            return Problem(WARNING, f"Pod {self.name} failed{': ' + self.reason if self.reason else ''}")
        if self.reason in _BAD_WAITING:
            return Problem(WARNING, f"Pod {self.name}: {self.reason} ({self.restarts} restarts)")
        if self.reason == "Unschedulable":
            return Problem(WARNING, f"Pod {self.name} cannot be scheduled")
        return None


_BAD_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "RunContainerError",
    }
)


def pod_row(pod: Mapping[str, Any]) -> PodRow:
    md, st = meta(pod), status_of(pod)
    labels = labels_of(pod)
    restarts = 0
    reason = ""
    for cs in _list(st.get("containerStatuses")):
        cs = _map(cs)
        restarts += _int(cs.get("restartCount")) or 0
        waiting = _map(_map(cs.get("state")).get("waiting"))
        if waiting.get("reason") and not reason:
            reason = _str(waiting.get("reason"))
        terminated = _map(_map(cs.get("state")).get("terminated"))
        if terminated.get("reason") and not reason and st.get("phase") == "Failed":
            reason = _str(terminated.get("reason"))
    for cond in _list(st.get("conditions")):
        cond = _map(cond)
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and not reason:
            reason = _str(cond.get("reason"))
    if not reason and st.get("reason"):
        reason = _str(st.get("reason"))
    return PodRow(
        name=_str(md.get("name")),
        group=_str(labels.get(C.LABEL_GROUP)),
        node_type=_str(labels.get(C.LABEL_NODE_TYPE)),
        phase=_str(st.get("phase")) or "Pending",
        ready=is_running_and_ready(pod),
        restarts=restarts,
        reason=reason,
        ip=_str(st.get("podIP")),
        node=_str(spec_of(pod).get("nodeName")),
        created=_str(md.get("creationTimestamp")),
        terminating=bool(md.get("deletionTimestamp")),
    )


def ready_workers(pods: Iterable[Mapping[str, Any]], group: str) -> int:
    """Worker Pods of a group that are Running and Ready and not on their way out."""
    n = 0
    for p in pods:
        labels = labels_of(p)
        if labels.get(C.LABEL_GROUP) != group or labels.get(C.LABEL_NODE_TYPE) != C.NODE_TYPE_WORKER:
            continue
        if meta(p).get("deletionTimestamp"):
            continue
        if is_running_and_ready(p):
            n += 1
    return n


def live_workers(pods: Iterable[Mapping[str, Any]], group: str) -> int:
    """Worker Pods of a group that exist and are not terminating (what the controller's events count)."""
    return sum(
        1
        for p in pods
        if labels_of(p).get(C.LABEL_GROUP) == group
        and labels_of(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_WORKER
        and not meta(p).get("deletionTimestamp")
    )


# RayClusters ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRow:
    name: str
    desired: int
    replicas: int | None
    min: int
    max: int | None
    ready: int
    ray: int | None
    resources: Resources
    suspended: bool
    scaled_by: str
    last_set_by: str
    problems: tuple[Problem, ...] = ()
    live: int = 0  # worker Pods that exist and are not terminating

    @property
    def severity(self) -> int:
        return worst(self.problems)

    @property
    def state(self) -> str:
        """suspended, ready, scaling up (Pods missing), starting (Pods there, not ready) or scaling down."""
        if self.suspended and not self.live:
            return "suspended"
        if self.live > self.desired:
            return "scaling down"
        if self.live < self.desired:
            return "scaling up"
        return "ready" if self.ready >= self.desired else "starting"


@dataclass(frozen=True)
class ClusterRow:
    namespace: str
    name: str
    uid: str
    state: str
    reason: str
    desired: int
    ready: int
    ray: int | None
    resources: Resources
    created: str
    autoscaling: str
    ray_version: str
    groups: tuple[GroupRow, ...]
    problems: tuple[Problem, ...]
    head_ready: bool
    owner: str = ""

    @property
    def severity(self) -> int:
        return max(worst(self.problems), max((g.severity for g in self.groups), default=0))

    @property
    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for g in self.groups:
            out.extend(g.problems)
        return sorted(out, key=lambda p: -p.severity)


def _groups(rc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [_map(g) for g in _list(spec_of(rc).get("workerGroupSpecs")) if isinstance(g, Mapping)]


def scaled_by(rc: Mapping[str, Any]) -> str:
    """Who decides a cluster's worker counts: Ray's autoscaler when in-tree autoscaling is on."""
    if spec_of(rc).get("enableInTreeAutoscaling") is True:
        version = _str(_map(spec_of(rc).get("autoscalerOptions")).get("version"))
        return f"Ray autoscaler{' ' + version if version else ''}"
    return "spec"


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in _list(status_of(obj).get("conditions")):
        if _map(c).get("type") == ctype:
            return _map(c)
    return None


def cluster_row(
    rc: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    ray_counts: Mapping[str, int] | None = None,
    managers: Mapping[str, FieldManager] | None = None,
) -> ClusterRow:
    md, st = meta(rc), status_of(rc)
    managers = managers or {}
    suspended_cluster = spec_of(rc).get("suspend") is True
    groups: list[GroupRow] = []
    for g in _groups(rc):
        name = _str(g.get("groupName"))
        desired = 0 if suspended_cluster else cl.desired_worker_replicas(g)
        ready = ready_workers(pods, name)
        gproblems: list[Problem] = []
        if ready < desired:
            gproblems.append(Problem(WARNING, f"group {name}: {ready} of {desired} workers ready"))
        by = managers.get(name)
        groups.append(
            GroupRow(
                name=name,
                desired=desired,
                replicas=_int(g.get("replicas")),
                min=_int(g.get("minReplicas")) or 0,
                max=_int(g.get("maxReplicas")),
                ready=ready,
                ray=None if ray_counts is None else ray_counts.get(name, 0),
                resources=group_resources(g, desired),
                suspended=g.get("suspend") is True or suspended_cluster,
                scaled_by=scaled_by(rc),
                last_set_by=by.label if by else "",
                problems=tuple(gproblems),
                live=live_workers(pods, name),
            )
        )
    state = _str(st.get("state"))
    reason = _str(st.get("reason"))
    problems = []
    failure = _condition(rc, C.COND_REPLICA_FAILURE)
    if state == C.STATE_FAILED or reason:
        problems.append(
            Problem(ERROR, f"{state or 'error'}: {reason or _str(st.get('message'))}".rstrip(": "))
        )
    if failure is not None and failure.get("status") == "True":
        problems.append(
            Problem(ERROR, f"{_str(failure.get('reason'))}: {_str(failure.get('message'))}".strip(": "))
        )
    heads = [p for p in pods if labels_of(p).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD]
    live_heads = [p for p in heads if not meta(p).get("deletionTimestamp")]
    head_ready = any(is_running_and_ready(p) for p in live_heads)
    if not suspended_cluster and not head_ready:
        problems.append(Problem(WARNING, "head Pod not ready" if live_heads else "no head Pod"))
    for p in pods:
        prob = pod_row(p).problem
        if prob is not None:
            problems.append(prob)
    desired_total = sum(g.desired for g in groups)
    ray_total = None if ray_counts is None else sum(g.ray or 0 for g in groups)
    resources = Resources(
        _status_quantity(st, "desiredCPU"),
        _status_quantity(st, "desiredGPU"),
        _status_quantity(st, "desiredMemory"),
    )
    owner = ""
    for ref in _list(md.get("ownerReferences")):
        ref = _map(ref)
        if ref.get("controller") is True:
            owner = f"{_str(ref.get('kind'))}/{_str(ref.get('name'))}"
    return ClusterRow(
        namespace=_str(md.get("namespace")),
        name=_str(md.get("name")),
        uid=_str(md.get("uid")),
        state="suspended" if suspended_cluster and not state else (state or "pending"),
        reason=reason,
        desired=desired_total,
        ready=sum(g.ready for g in groups),
        ray=ray_total,
        resources=resources,
        created=_str(md.get("creationTimestamp")),
        autoscaling=scaled_by(rc),
        ray_version=_str(spec_of(rc).get("rayVersion")),
        groups=tuple(groups),
        problems=tuple(problems),
        head_ready=head_ready,
        owner=owner,
    )


@dataclass(frozen=True)
class ConditionRow:
    type: str
    status: str
    reason: str
    message: str
    since: str


def condition_rows(obj: Mapping[str, Any]) -> list[ConditionRow]:
    return [
        ConditionRow(
            _str(c.get("type")),
            _str(c.get("status")),
            _str(c.get("reason")),
            _str(c.get("message")),
            _str(c.get("lastTransitionTime")),
        )
        for c in (_map(x) for x in _list(status_of(obj).get("conditions")))
    ]


@dataclass(frozen=True)
class ServicePortRow:
    name: str
    type: str
    cluster_ip: str
    ports: str
    role: str


def service_row(svc: Mapping[str, Any]) -> ServicePortRow:
    sp = spec_of(svc)
    ports = ", ".join(
        f"{_str(p.get('name')) + ' ' if p.get('name') else ''}{_str(p.get('port'))}/{_str(p.get('protocol') or 'TCP')}"
        for p in (_map(x) for x in _list(sp.get("ports")))
    )
    labels = labels_of(svc)
    role = _str(labels.get(C.LABEL_NODE_TYPE))
    if labels.get(C.LABEL_HEADLESS_WORKER_SVC):
        role = "headless workers"
    elif labels.get(C.LABEL_SERVE) or _str(meta(svc).get("name")).endswith("-serve-svc"):
        role = "serve"
    return ServicePortRow(
        _str(meta(svc).get("name")),
        _str(sp.get("type")) or "ClusterIP",
        _str(sp.get("clusterIP")),
        ports,
        role,
    )


# RayJobs --------------------------------------------------------------------------------------------

JOB_FAILED_DEPLOYMENT = frozenset({"Failed", "ValidationFailed"})
JOB_FAILED_STATUS = frozenset({"FAILED", "STOPPED"})
JOB_TERMINAL_STATUS = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@dataclass(frozen=True)
class JobRow:
    namespace: str
    name: str
    uid: str
    job_status: str
    deployment_status: str
    cluster: str
    submission_id: str
    mode: str
    entrypoint: str
    start: str
    end: str
    created: str
    succeeded: int
    failed: int
    backoff_limit: int
    reason: str
    message: str
    dashboard_url: str
    problems: tuple[Problem, ...]

    @property
    def severity(self) -> int:
        return worst(self.problems)

    @property
    def terminal(self) -> bool:
        return self.job_status in JOB_TERMINAL_STATUS or self.deployment_status in (
            "Complete",
            *JOB_FAILED_DEPLOYMENT,
        )


def job_row(rj: Mapping[str, Any]) -> JobRow:
    md, sp, st = meta(rj), spec_of(rj), status_of(rj)
    dep, js = _str(st.get("jobDeploymentStatus")), _str(st.get("jobStatus"))
    reason, message = _str(st.get("reason")), _str(st.get("message"))
    problems: list[Problem] = []
    if dep in JOB_FAILED_DEPLOYMENT or js in JOB_FAILED_STATUS:
        problems.append(Problem(ERROR, f"{dep or js}: {reason or message or js}".rstrip(": ")))
    elif dep == "Retrying":
        problems.append(Problem(WARNING, f"retrying after {_int(st.get('failed')) or 0} failed attempts"))
    return JobRow(
        namespace=_str(md.get("namespace")),
        name=_str(md.get("name")),
        uid=_str(md.get("uid")),
        job_status=js,
        deployment_status=dep or "New",
        cluster=_str(st.get("rayClusterName")),
        submission_id=_str(st.get("jobId")) or _str(sp.get("jobId")),
        mode=_str(sp.get("submissionMode")) or "K8sJobMode",
        entrypoint=_str(sp.get("entrypoint")),
        start=_str(st.get("startTime")),
        end=_str(st.get("endTime")),
        created=_str(md.get("creationTimestamp")),
        succeeded=_int(st.get("succeeded")) or 0,
        failed=_int(st.get("failed")) or 0,
        backoff_limit=_int(sp.get("backoffLimit")) or 0,
        reason=reason,
        message=message,
        dashboard_url=_str(st.get("dashboardURL")),
        problems=tuple(problems),
    )


# RayServices ----------------------------------------------------------------------------------------

APP_BAD = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
DEPLOYMENT_BAD = frozenset({"UNHEALTHY", "DEPLOY_FAILED"})


@dataclass(frozen=True)
class DeploymentRow:
    name: str
    status: str
    message: str


@dataclass(frozen=True)
class AppRow:
    name: str
    status: str
    message: str
    deployments: tuple[DeploymentRow, ...]


@dataclass(frozen=True)
class ServeSide:
    """The active or the pending side of a RayService (`status.activeServiceStatus` / `pendingServiceStatus`)."""

    cluster: str
    apps: tuple[AppRow, ...]
    target_capacity: int | None
    traffic_percent: int | None
    migrated: str


def serve_side(status: Mapping[str, Any]) -> ServeSide:
    apps = []
    for name, app in sorted(_map(status.get("applicationStatuses")).items()):
        app = _map(app)
        deps = tuple(
            DeploymentRow(str(d), _str(_map(v).get("status")), _str(_map(v).get("message")))
            for d, v in sorted(_map(app.get("serveDeploymentStatuses")).items())
        )
        apps.append(AppRow(str(name), _str(app.get("status")), _str(app.get("message")), deps))
    return ServeSide(
        cluster=_str(status.get("rayClusterName")),
        apps=tuple(apps),
        target_capacity=_int(status.get("targetCapacity")),
        traffic_percent=_int(status.get("trafficRoutedPercent")),
        migrated=_str(status.get("lastTrafficMigratedTime")),
    )


@dataclass(frozen=True)
class RayServiceRow:
    namespace: str
    name: str
    uid: str
    status: str
    ready_reason: str
    upgrading: bool
    active: ServeSide
    pending: ServeSide
    endpoints: int
    strategy: str
    created: str
    problems: tuple[Problem, ...]

    @property
    def severity(self) -> int:
        return worst(self.problems)


def rayservice_row(rs: Mapping[str, Any]) -> RayServiceRow:
    md, sp, st = meta(rs), spec_of(rs), status_of(rs)
    ready = _condition(rs, "Ready")
    upgrading = _condition(rs, "UpgradeInProgress")
    active = serve_side(_map(st.get("activeServiceStatus")))
    pending = serve_side(_map(st.get("pendingServiceStatus")))
    problems: list[Problem] = []
    ready_reason = _str((ready or {}).get("reason"))
    if ready is not None and ready.get("status") != "True":
        sev = ERROR if ready_reason in ("ValidationFailed", "InitializingTimeout") else WARNING
        if ready_reason != "Initializing":
            problems.append(Problem(sev, f"not ready: {ready_reason} {_str(ready.get('message'))}".strip()))
    for side, label in ((active, "active"), (pending, "pending")):
        for app in side.apps:
            if app.status in APP_BAD:
                problems.append(Problem(ERROR, f"{label} app {app.name}: {app.status} {app.message}".strip()))
            for d in app.deployments:
                if d.status in DEPLOYMENT_BAD:
                    problems.append(Problem(WARNING, f"{label} deployment {app.name}/{d.name}: {d.status}"))
    status = "Ready" if ready is not None and ready.get("status") == "True" else (ready_reason or "Pending")
    return RayServiceRow(
        namespace=_str(md.get("namespace")),
        name=_str(md.get("name")),
        uid=_str(md.get("uid")),
        status=status,
        ready_reason=ready_reason,
        upgrading=upgrading is not None and upgrading.get("status") == "True",
        active=active,
        pending=pending,
        endpoints=_int(st.get("numServeEndpoints")) or 0,
        strategy=_str(_map(sp.get("upgradeStrategy")).get("type")) or "NewCluster",
        created=_str(md.get("creationTimestamp")),
        problems=tuple(problems),
    )


# Ordering -------------------------------------------------------------------------------------------


def problems_first(rows: Iterable[Any]) -> list[Any]:
    """Worst first, then by namespace and name."""
    return sorted(rows, key=lambda r: (-r.severity, r.namespace, r.name))


@dataclass(frozen=True)
class TimelineEntry:
    """One moment of an object's life: when, what, and where the view learnt it."""

    t: float
    what: str
    detail: str = ""
    kind: str = "status"  # status | event | warning


def ts(text: str) -> float:
    return parse_timestamp(text) or 0.0


@dataclass
class Totals:
    clusters: int = 0
    clusters_with_problems: int = 0
    workers_desired: int = 0
    workers_ready: int = 0
    jobs: int = 0
    jobs_running: int = 0
    jobs_with_problems: int = 0
    services: int = 0
    services_with_problems: int = 0


def totals(
    clusters: Sequence[ClusterRow], jobs: Sequence[JobRow], services: Sequence[RayServiceRow]
) -> Totals:
    return Totals(
        clusters=len(clusters),
        clusters_with_problems=sum(1 for c in clusters if c.severity),
        workers_desired=sum(c.desired for c in clusters),
        workers_ready=sum(c.ready for c in clusters),
        jobs=len(jobs),
        jobs_running=sum(1 for j in jobs if j.job_status == "RUNNING"),
        jobs_with_problems=sum(1 for j in jobs if j.severity),
        services=len(services),
        services_with_problems=sum(1 for s in services if s.severity),
    )


# Fetched data and events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """The last answer of a scheduled fetch: its value, when it came (seconds; 0 = never) and the last error."""

    value: Any = None
    at: float = 0.0
    error: str = ""

    @property
    def loaded(self) -> bool:
        return self.at > 0


@dataclass(frozen=True)
class EventRow:
    t: float
    type: str
    reason: str
    message: str
    count: int
    source: str


def event_row(ev: Mapping[str, Any]) -> EventRow:
    """A core/v1 Event (events.k8s.io Events read through core/v1 carry eventTime and series instead)."""
    series = _map(ev.get("series"))
    t = (
        ts(_str(series.get("lastObservedTime")))
        or ts(_str(ev.get("lastTimestamp")))
        or ts(_str(ev.get("eventTime")))
        or ts(_str(ev.get("firstTimestamp")))
        or ts(_str(meta(ev).get("creationTimestamp")))
    )
    count = _int(series.get("count")) or _int(ev.get("count")) or 1
    source = _str(ev.get("reportingComponent")) or _str(_map(ev.get("source")).get("component"))
    return EventRow(
        t, _str(ev.get("type")) or "Normal", _str(ev.get("reason")), _str(ev.get("message")), count, source
    )


@dataclass(frozen=True)
class ServePlot:
    """Serve replicas per deployment over time, for the RayService page (same shape as the worker plots)."""

    plots: Mapping[str, Any] = field(default_factory=dict)
    changes: Sequence[ScaleChange] = ()
    fetched: Fetched = field(default_factory=Fetched)
