"""The RayService state machine as a pure function.

`decide(rayservice, world, config)` maps a RayService and what the reconciler observed (its RayClusters
with their head pods, what each head's dashboard and Serve proxies answered, its two Services, the ready
endpoints behind the serve Service, the time, a random suffix) to the new status plus an ordered list of
actions. The I/O shell (rayservice.py) runs the actions in order and writes the status only when they
succeeded.

The steps follow KubeRay v1.7 (`ray-operator/controllers/ray/rayservice_controller.go`): finalizer,
validation, suspend, clean-up of clusters that are neither active nor pending, the initializing timeout,
active and pending RayClusters (create, or update in place), the head pods' `ray.io/serve` label, the
Serve config, the two Services, then status and conditions.

Where rayop decides differently, on purpose:

- Nothing decided is kept only in memory. The Serve config applied to a cluster is recorded on that
  RayCluster (`rayop.io/serve-config-hash`, written after a successful PUT), and the moment an old cluster
  may be deleted is recorded on it the first time it is seen unused (`rayop.io/delete-after`). KubeRay
  keeps both in memory, so after a restart it PUTs every config again and restarts every deletion timer.
- The Services move to the pending cluster only when it can serve: every Serve application RUNNING (as
  KubeRay) *and* at least one Ready pod labelled `ray.io/serve=true` whose Serve proxy answered
  `/-/healthz` (KubeRay users saw 502s right after a switch, KubeRay issue #1559).
- An old cluster is deleted after the deletion delay *and* once its Serve proxies report no ongoing
  requests, waiting at most `rayop.io/serve-drain-timeout` (default 60 s) past the delay.
- A Serve application that fails (bad import path...) gets a Warning event with Ray's message, and the
  UpgradeInProgress condition says why the upgrade waits while the active cluster keeps serving.
- A spec changed back to the active cluster's while an upgrade waits cancels the upgrade instead of
  starting a third cluster.
- A worker group sized through its RayWorkerGroup (`kubectl scale`, the HPA; docs/scaling.md) keeps its
  size across an upgrade: the new cluster starts the group at the size it was scaled to, and an in-place
  update keeps the group's live replicas. KubeRay starts every new cluster at rayClusterConfig's replicas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from rayop.api import constants as C
from rayop.api import features
from rayop.base.objects import (
    annotations_of,
    clone,
    condition_true,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    spec_of,
)
from rayop.base.times import format_time, parse_time
from rayop.base.types import Obj
from rayop.builders import rayservice as B
from rayop.builders import servedeployment as SDB
from rayop.builders.options import BuildOptions
from rayop.controllers import servedeployment_plan as SP
from rayop.validation import FieldError, validate_rayservice
from rayop.validation._parse import parse_go_atoi, parse_go_duration

RUNNING: Final = "RUNNING"
FAILED_APP_STATES: Final = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
INITIALIZING_MESSAGE: Final = "RayService is initializing"


@dataclass(frozen=True)
class RayServiceConfig:
    """Operator-wide settings the machine reads."""

    requeue_seconds: float = 2.0
    """Every RayService is looked at again this often (KubeRay: 2 s): Serve applications change state
    without any Kubernetes event."""

    zero_downtime: bool = True
    """Upgrade with a new cluster when `upgradeStrategy.type` is unset (`ENABLE_ZERO_DOWNTIME` != false)."""

    gates: Mapping[str, bool] = field(default_factory=features.resolve_gates)

    kuberay_version: str = C.KUBERAY_VERSION
    """Stamped on the RayClusters it makes; a cluster stamped otherwise is refreshed in place."""

    build_options: BuildOptions = field(default_factory=BuildOptions)
    """For the RayService's copy of its cluster's head Service (headless unless
    ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE)."""

    drain_timeout_seconds: float = 60.0
    """How long past its deletion delay an old cluster may keep in-flight requests, when the RayService
    does not say (`rayop.io/serve-drain-timeout`)."""

    serve_deployment_targets: bool = True
    """Keep a RayServeDeployment per Serve deployment and fold its replicas into the Serve config
    (`--enable-rayservedeployments`; needs the rayop.io CRD)."""

    @property
    def incremental_gate(self) -> bool:
        return bool(self.gates.get(features.RAY_SERVICE_INCREMENTAL_UPGRADE, True))


# What the reconciler observed ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeLookup:
    """One GET /api/serve/applications/?api_type=declarative: its `applications`, or why it failed."""

    apps: Mapping[str, Any] | None = None
    error: str = ""


@dataclass(frozen=True)
class ClusterObs:
    """One RayCluster of the RayService and what its pods answered."""

    cluster: Obj
    head_pod: Obj | None = None
    head_proxy: bool | None = None
    """The head's Serve proxy at `/-/healthz`: True (200), False (answered otherwise or refused), None
    (not asked, or no answer yet: a slow answer on a busy machine does not drop the head from serving)."""
    serve: ServeLookup | None = None
    """None when not asked (the head is not ready)."""
    serving_pods: int = 0
    """Ready pods labelled `ray.io/serve=true` (or the head, whose label this pass sets) whose proxy
    answered `/-/healthz`."""
    ongoing_requests: int | None = None
    """Requests in flight at the cluster's Serve proxies (`ray_serve_num_ongoing_http_requests` and the
    gRPC one, summed); None when not asked or some proxy could not be read."""
    serve_service: Obj | None = None
    """The incremental upgrade's per-cluster serve Service `<cluster>-serve-svc` (None: not there, or not
    an incremental RayService)."""
    serve_endpoints: int = 0
    """Distinct ready pods in that Service's EndpointSlices."""
    pod_groups: Mapping[str, str] = field(default_factory=dict)
    """The cluster's Pods: name -> `ray.io/group` (where a scale target's replicas run)."""
    pods_by_ip: Mapping[str, str] = field(default_factory=dict)
    """The cluster's Pods: IP -> name."""


@dataclass(frozen=True)
class World:
    now: datetime
    clusters: Mapping[str, ClusterObs] = field(default_factory=dict)
    """Every RayCluster labelled as originated from this RayService, by name."""
    head_service: Obj | None = None
    serve_service: Obj | None = None
    serve_endpoints: int = 0
    """Distinct ready pods in the serve Service's EndpointSlices."""
    suffix: str = "xxxxx"
    gateway: Obj | None = None
    """The incremental upgrade's Gateway and HTTPRoute, read from the API server (None: not there)."""
    httproute: Obj | None = None
    group_sizes: Mapping[str, int] = field(default_factory=dict)
    """groupName -> the replicas its RayWorkerGroup asks for (rayop.builders.workergroup.service_group_sizes):
    a new cluster starts the group at that size, and an in-place update keeps the group's live size."""
    serve_targets: Mapping[str, Obj] = field(default_factory=dict)
    """RayServeDeployments by name: those naming this RayService, and any object holding a name one of
    its deployments would get."""


# Actions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddFinalizer:
    pass


@dataclass(frozen=True)
class RemoveFinalizer:
    pass


@dataclass(frozen=True)
class CreateCluster:
    cluster: Obj


@dataclass(frozen=True)
class UpdateCluster:
    """Replace the cluster's spec, labels and annotations (the object carries its resourceVersion)."""

    cluster: Obj
    role: str


@dataclass(frozen=True)
class AnnotateCluster:
    """Merge these annotations into the cluster (None removes one)."""

    name: str
    annotations: Mapping[str, str | None]


@dataclass(frozen=True)
class DeleteCluster:
    name: str
    why: str


@dataclass(frozen=True)
class SetServeLabel:
    pod: str
    value: str


@dataclass(frozen=True)
class ApplyServeConfig:
    """PUT the config; on success record `config_hash` (and `record`) on the cluster."""

    cluster: str
    config: Obj
    config_hash: str
    record: Mapping[str, str] = field(default_factory=dict)
    """More annotations to write with the hash (the incremental upgrade's text and target_capacity)."""
    capacity_change: bool = False
    """Only `target_capacity` changes (events UpdatedServeTargetCapacity / FailedToUpdateTargetCapacity)."""


@dataclass(frozen=True)
class CreateService:
    service: Obj


@dataclass(frozen=True)
class SwitchService:
    """Point a Service at another cluster (its spec, ClusterIP kept)."""

    name: str
    spec: Obj
    cluster: str


@dataclass(frozen=True)
class DeleteService:
    name: str


@dataclass(frozen=True)
class CreateGateway:
    gateway: Obj


@dataclass(frozen=True)
class UpdateGateway:
    """Replace the Gateway (the object carries the resourceVersion it was read at)."""

    gateway: Obj


@dataclass(frozen=True)
class CreateHTTPRoute:
    route: Obj


@dataclass(frozen=True)
class UpdateHTTPRoute:
    """Replace the HTTPRoute (weights and migration time; guarded by its resourceVersion)."""

    route: Obj
    why: str


@dataclass(frozen=True)
class CreateServeDeployment:
    target: Obj


@dataclass(frozen=True)
class DeleteServeDeployment:
    name: str
    why: str


@dataclass(frozen=True)
class UpdateServeDeployment:
    """Write a RayServeDeployment's spec.replicas (when set), then its status; events on it."""

    update: SP.TargetUpdate


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


Action = (
    AddFinalizer
    | RemoveFinalizer
    | CreateCluster
    | UpdateCluster
    | AnnotateCluster
    | DeleteCluster
    | SetServeLabel
    | ApplyServeConfig
    | CreateService
    | SwitchService
    | DeleteService
    | CreateGateway
    | UpdateGateway
    | CreateHTTPRoute
    | UpdateHTTPRoute
    | CreateServeDeployment
    | DeleteServeDeployment
    | UpdateServeDeployment
    | Event
)


@dataclass
class Decision:
    status: Obj
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None
    status_changed: bool = False


# Small pure helpers -------------------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String (to the millisecond): `10s`, `1m30s`, `1h0m0s`, `1.5s`, `250ms`."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}"
    if rest % 1000:
        secs += "." + f"{rest % 1000:03d}".rstrip("0")
    if h:
        return f"{sign}{h}h{m}m{secs}s"
    if m:
        return f"{sign}{m}m{secs}s"
    return f"{sign}{secs}s"


def duration_annotation(value: object) -> float | None:
    """A Go duration (`5m`) or a number of seconds (`300`), as `ray.io/initializing-timeout` takes it."""
    if not isinstance(value, str) or not value:
        return None
    d = parse_go_duration(value)
    if d is not None:
        return d
    n = parse_go_atoi(value)
    return float(n) if n is not None else None


def initializing_timeout(rayservice: Mapping[str, Any]) -> float | None:
    t = duration_annotation(annotations_of(rayservice).get(C.ANN_INITIALIZING_TIMEOUT))
    return t if t is not None and t > 0 else None


def drain_timeout(rayservice: Mapping[str, Any], config: RayServiceConfig) -> float:
    t = duration_annotation(annotations_of(rayservice).get(C.ANN_SERVE_DRAIN_TIMEOUT))
    return t if t is not None and t >= 0 else config.drain_timeout_seconds


def deletion_delay(rayservice: Mapping[str, Any]) -> float:
    v = spec_of(rayservice).get("rayClusterDeletionDelaySeconds")
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return float(v)
    return float(C.DEFAULT_RAYCLUSTER_DELETION_DELAY_SECONDS)


def delete_after(cluster: Mapping[str, Any]) -> datetime | None:
    return parse_time(annotations_of(cluster).get(C.ANN_DELETE_AFTER))


def cluster_names(rayservice: Mapping[str, Any]) -> tuple[str, str]:
    st = rayservice.get("status") or {}
    return (
        str((st.get("activeServiceStatus") or {}).get("rayClusterName") or ""),
        str((st.get("pendingServiceStatus") or {}).get("rayClusterName") or ""),
    )


def unused_clusters(rayservice: Mapping[str, Any], clusters: Iterable[str]) -> list[str]:
    """The RayService's clusters that are neither active nor pending (to be deleted after the delay)."""
    active, pending = cluster_names(rayservice)
    return sorted(c for c in clusters if c not in (active, pending))


def head_ready(cluster: Mapping[str, Any]) -> bool:
    """KubeRay waits for the RayCluster's HeadPodReady condition before talking to Serve."""
    return condition_true(cluster, C.COND_HEAD_POD_READY)


def app_statuses(apps: Mapping[str, Any]) -> Obj:
    """Ray's ApplicationDetails → KubeRay's AppStatus (`status`, `message`, `serveDeploymentStatuses`);
    the unnamed application is called `default`."""
    out: Obj = {}
    for name, app in apps.items():
        if not isinstance(app, Mapping):
            continue
        deployments: Obj = {}
        for dname, dep in (app.get("deployments") or {}).items():
            if isinstance(dep, Mapping):
                deployments[str(dname)] = {
                    "status": str(dep.get("status") or ""),
                    "message": str(dep.get("message") or ""),
                }
        entry: Obj = {"status": str(app.get("status") or ""), "message": str(app.get("message") or "")}
        if deployments:
            entry["serveDeploymentStatuses"] = deployments
        out[str(name) or C.DEFAULT_SERVE_APP_NAME] = entry
    return out


def apps_running(apps: Mapping[str, Any] | None) -> bool:
    """At least one application and all of them RUNNING (KubeRay's "ready to serve")."""
    return bool(apps) and all(
        isinstance(a, Mapping) and a.get("status") == RUNNING for a in (apps or {}).values()
    )


def zero_downtime_enabled(rayservice: Mapping[str, Any], config: RayServiceConfig) -> bool:
    """isZeroDowntimeUpgradeEnabled: `upgradeStrategy.type` decides when set, else ENABLE_ZERO_DOWNTIME."""
    utype = (spec_of(rayservice).get("upgradeStrategy") or {}).get("type")
    if utype:
        allowed = {C.UPGRADE_NEW_CLUSTER}
        if config.incremental_gate:
            allowed.add(C.UPGRADE_NEW_CLUSTER_INCREMENTAL)
        return utype in allowed
    return config.zero_downtime


def _stamped_by_us(cluster: Mapping[str, Any], config: RayServiceConfig) -> bool:
    ann = annotations_of(cluster)
    return (
        ann.get(C.ANN_KUBERAY_VERSION) == config.kuberay_version
        and ann.get(C.ANN_HASH_VERSION) == B.HASH_VERSION
    )


def same_spec(rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> bool:
    return annotations_of(cluster).get(C.ANN_HASH_WITHOUT_REPLICAS) == B.goal_hash(rayservice)


def groups_appended(rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> bool:
    """Worker groups were only added at the end: the goal's first N groups hash like the cluster (N from
    `ray.io/num-worker-groups`)."""
    n = parse_go_atoi(str(annotations_of(cluster).get(C.ANN_NUM_WORKER_GROUPS) or ""))
    if n is None or n < 0:
        return False
    prefix = B.prefix_hash(rayservice, n)
    return prefix is not None and prefix == annotations_of(cluster).get(C.ANN_HASH_WITHOUT_REPLICAS)


def _pod_ready(pod: Mapping[str, Any] | None) -> bool:
    if not pod or is_terminating(pod):
        return False
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


def head_serve_label(
    head_pod: Mapping[str, Any] | None, proxy: bool | None, exclude_head: bool
) -> str | None:
    """The `ray.io/serve` value the head pod should carry; None to leave it as it is."""
    if head_pod is None or is_terminating(head_pod):
        return None
    if exclude_head:
        return "false"
    if proxy is None:
        current = labels_of(head_pod).get(C.LABEL_SERVE)
        # No answer yet: keep what it says, but a fresh head never counts as serving before it answered.
        return None if current in ("true", "false") else "false"
    return "true" if proxy else "false"


def head_can_serve(obs: ClusterObs, exclude_head: bool) -> bool:
    return not exclude_head and obs.head_proxy is True and _pod_ready(obs.head_pod)


# Conditions ---------------------------------------------------------------------------------------------


def _find(conds: list[Obj], ctype: str) -> Obj | None:
    return next((c for c in conds if c.get("type") == ctype), None)


def _set(
    conds: list[Obj],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
    *,
    force_transition: bool = False,
) -> None:
    """meta.SetStatusCondition: lastTransitionTime moves only when the status flips (or when forced)."""
    c = _find(conds, ctype)
    if c is None:
        c = {"type": ctype, "status": status, "lastTransitionTime": now}
        conds.append(c)
    elif c.get("status") != status or force_transition:
        c["status"] = status
        c["lastTransitionTime"] = now
    c["reason"] = reason
    c["message"] = message
    if generation is not None:
        c["observedGeneration"] = generation
    else:
        c.pop("observedGeneration", None)


def _cond_is(conds: list[Obj], ctype: str, status: str, reason: str | None = None) -> bool:
    c = _find(conds, ctype)
    return c is not None and c.get("status") == status and (reason is None or c.get("reason") == reason)


# The machine ----------------------------------------------------------------------------------------------


class _Step:
    def __init__(self, rs: Mapping[str, Any], world: World, cfg: RayServiceConfig) -> None:
        self.rs = rs
        self.world = world
        self.cfg = cfg
        self.md = meta(rs)
        self.spec = spec_of(rs)
        self.ns = namespace_of(rs)
        self.old: Obj = clone(dict(rs.get("status") or {}))
        self.st: Obj = clone(self.old)
        self.conds: list[Obj] = [c for c in self.st.get("conditions") or [] if isinstance(c, dict)]
        self.st["conditions"] = self.conds
        gen = self.md.get("generation")
        self.generation: int | None = int(gen) if isinstance(gen, int) else None
        self.now = world.now
        self.now_s = format_time(world.now)
        self.actions: list[Action] = []
        self.requeue: float | None = cfg.requeue_seconds
        self.exclude_head = bool(self.spec.get("excludeHeadPodFromServeSvc"))
        # serveConfigV2 as a mapping (None when it is not one) and the scale targets folded into it.
        self.serve_text = str(self.spec.get("serveConfigV2") or "")
        try:
            self.serve_obj: Obj | None = B.serve_config(self.serve_text)
        except B.ServeConfigError:
            self.serve_obj = None
        self.targets: Mapping[str, Obj] = world.serve_targets if cfg.serve_deployment_targets else {}
        a = world.clusters.get(cluster_names(rs)[0])
        self.active_apps = a.serve.apps if a is not None and a.serve is not None else None
        self.wanted_hash: dict[str, str] = {}

    # status helpers

    def cond(self, ctype: str, status: str, reason: str, message: str, *, force: bool = False) -> None:
        _set(self.conds, ctype, status, reason, message, self.now_s, self.generation, force_transition=force)

    def event(self, etype: str, reason: str, message: str) -> None:
        self.actions.append(Event(etype, reason, message))

    def ref(self, name: str) -> str:
        return f"{self.ns}/{name}"

    def section(self, key: str) -> Obj:
        sec = self.st.get(key)
        if not isinstance(sec, dict):
            sec = {}
            self.st[key] = sec
        return sec

    @property
    def active_name(self) -> str:
        return str(self.section("activeServiceStatus").get("rayClusterName") or "")

    @property
    def pending_name(self) -> str:
        return str(self.section("pendingServiceStatus").get("rayClusterName") or "")

    def obs(self, name: str) -> ClusterObs | None:
        return self.world.clusters.get(name) if name else None

    def requeue_within(self, seconds: float) -> None:
        seconds = max(seconds, 0.05)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    # -- deletion -------------------------------------------------------------------------------------

    def on_delete(self) -> None:
        """The RayService is being deleted: its clusters go at once, then the finalizer."""
        self.requeue = self.cfg.requeue_seconds
        remaining = False
        for name, o in sorted(self.world.clusters.items()):
            remaining = True
            if not is_terminating(o.cluster):
                self.actions.append(DeleteCluster(name, "the RayService is being deleted"))
        if not remaining and C.FINALIZER_RAYSERVICE in (self.md.get("finalizers") or []):
            self.actions.append(RemoveFinalizer())
            self.requeue = None

    # -- validation -------------------------------------------------------------------------------------

    def validation_failed(self, problems: list[FieldError]) -> None:
        metadata = [p for p in problems if p.path.startswith("metadata")]
        chosen = metadata or problems
        reason = C.EV_INVALID_RAYSERVICE_METADATA if metadata else C.EV_INVALID_RAYSERVICE_SPEC
        msg = "; ".join(str(p) for p in chosen)
        self.event("Warning", reason, f"{self.ref(str(self.md.get('name')))}: {msg}")
        self.cond(C.COND_RS_READY, "False", C.RS_REASON_VALIDATION_FAILED, msg)
        # Nothing will happen until the spec changes, which the watch reports.
        self.requeue = None

    def after_validation(self) -> None:
        """A RayService fixed after failing validation starts over as initializing."""
        if _cond_is(self.conds, C.COND_RS_READY, "False", C.RS_REASON_VALIDATION_FAILED):
            self.cond(C.COND_RS_READY, "False", C.RS_REASON_INITIALIZING, INITIALIZING_MESSAGE, force=True)

    # -- suspend --------------------------------------------------------------------------------------------

    def suspend(self) -> bool:
        """The two-phase suspend: Suspending is persisted before anything is deleted, then the RayService
        runs to Suspended even if `suspend` is turned off meanwhile. True: stop this pass here."""
        if _cond_is(self.conds, C.COND_RS_SUSPENDING, "True"):
            left = False
            for name, o in sorted(self.world.clusters.items()):
                left = True
                if not is_terminating(o.cluster):
                    self.actions.append(DeleteCluster(name, "the RayService is suspending"))
            for svc in (self.world.head_service, self.world.serve_service):
                if svc is not None:
                    left = True
                    if not is_terminating(svc):
                        self.actions.append(DeleteService(name_of(svc)))
            if left:
                return True
            done = "All owned resources have been deleted."
            self.cond(C.COND_RS_SUSPENDING, "False", C.RS_REASON_SUSPEND_COMPLETE, done)
            self.cond(C.COND_RS_SUSPENDED, "True", C.RS_REASON_SUSPEND_COMPLETE, done)
            self.cond(C.COND_RS_READY, "False", C.RS_REASON_SUSPEND_COMPLETE, "RayService is suspended.")
            return True
        if _cond_is(self.conds, C.COND_RS_SUSPENDED, "True"):
            if self.spec.get("suspend"):
                self.requeue = None
                return True
            self.cond(
                C.COND_RS_SUSPENDED,
                "False",
                C.RS_REASON_RESUMED,
                "Spec.Suspend is false; the RayService starts again.",
            )
            # From now: the initializing timeout counts from the resume, not from the suspend.
            self.cond(C.COND_RS_READY, "False", C.RS_REASON_INITIALIZING, INITIALIZING_MESSAGE, force=True)
            self.cond(C.COND_RS_UPGRADE_IN_PROGRESS, "False", C.RS_REASON_INITIALIZING, INITIALIZING_MESSAGE)
            return False
        if not self.spec.get("suspend"):
            return False
        self.cond(
            C.COND_RS_SUSPENDING,
            "True",
            C.RS_REASON_SUSPEND_REQUESTED,
            "Spec.Suspend is true; will delete RayClusters and Services owned by this RayService.",
        )
        self.cond(C.COND_RS_READY, "False", C.RS_REASON_SUSPEND_IN_PROGRESS, "RayService is suspending.")
        self.cond(
            C.COND_RS_UPGRADE_IN_PROGRESS,
            "False",
            C.RS_REASON_SUSPEND_IN_PROGRESS,
            "RayService is suspending.",
        )
        self.st["activeServiceStatus"] = {}
        self.st["pendingServiceStatus"] = {}
        self.st["numServeEndpoints"] = 0
        self.st["serviceStatus"] = ""
        self.requeue_within(0.05)
        return True

    # -- clusters nobody uses --------------------------------------------------------------------------------

    def clean_up(self) -> bool:
        """Clusters that are neither active nor pending: record when each may go (once, on the cluster),
        then delete it once that time has come and its Serve proxies are idle or the drain cap passed.
        Returns whether any such cluster is left."""
        left = False
        delay = deletion_delay(self.rs)
        cap = drain_timeout(self.rs, self.cfg)
        for name in unused_clusters(self.rs, self.world.clusters):
            o = self.world.clusters[name]
            if is_terminating(o.cluster):
                left = True
                continue
            left = True
            due = delete_after(o.cluster)
            if due is None:
                due = self.now + timedelta(seconds=delay)
                self.actions.append(AnnotateCluster(name, {C.ANN_DELETE_AFTER: format_time(due)}))
                self.requeue_within((due - self.now).total_seconds() + 0.5)
                continue
            if self.now < due:
                self.requeue_within((due - self.now).total_seconds() + 0.5)
                continue
            drained = o.ongoing_requests == 0
            capped = self.now >= due + timedelta(seconds=cap)
            if drained or capped:
                why = (
                    f"its deletion time {format_time(due)} has passed and its Serve proxies have no "
                    "ongoing requests"
                    if drained
                    else f"its deletion time {format_time(due)} has passed and the drain timeout "
                    f"({go_duration(cap)}) is over"
                )
                self.actions.append(DeleteCluster(name, why))
            else:
                self.requeue_within(min(1.0, self.cfg.requeue_seconds))
        # A cluster in use never keeps an old deletion time (it would be deleted at once when unused again).
        for name in (self.active_name, self.pending_name):
            used = self.obs(name)
            if used is not None and C.ANN_DELETE_AFTER in annotations_of(used.cluster):
                self.actions.append(AnnotateCluster(name, {C.ANN_DELETE_AFTER: None}))
        return left

    # -- clusters ---------------------------------------------------------------------------------------------

    def should_update(self, cluster: Mapping[str, Any], *, active: bool) -> bool:
        """shouldUpdateCluster: the active cluster is refreshed when another operator version (or hash
        function) stamped it and no upgrade runs; either cluster takes worker groups appended at the end."""
        if active:
            if _cond_is(self.conds, C.COND_RS_UPGRADE_IN_PROGRESS, "True"):
                return False
            if not _stamped_by_us(cluster, self.cfg):
                return True
        if same_spec(self.rs, cluster):
            return False
        return groups_appended(self.rs, cluster)

    def reconcile_clusters(self) -> tuple[Obj | None, Obj | None]:
        """The active and pending RayCluster as they will be after this pass's create or update."""
        a = self.obs(self.active_name)
        p = self.obs(self.pending_name)
        active = a.cluster if a is not None else None
        pending = p.cluster if p is not None else None
        version, sizes = self.cfg.kuberay_version, self.world.group_sizes
        if self.pending_name and pending is None:
            pending = B.build_cluster(self.rs, self.pending_name, kuberay_version=version, sizes=sizes)
            self.actions.append(CreateCluster(pending))
            return active, pending
        if active is not None and self.should_update(active, active=True):
            active = B.updated_cluster(active, self.rs, kuberay_version=version, sizes=sizes)
            self.actions.append(UpdateCluster(active, "active"))
            return active, pending
        if pending is not None and self.should_update(pending, active=False):
            pending = B.updated_cluster(pending, self.rs, kuberay_version=version, sizes=sizes)
            self.actions.append(UpdateCluster(pending, "pending"))
        return active, pending

    def needs_new_cluster(self, active: Mapping[str, Any] | None, pending: Mapping[str, Any] | None) -> bool:
        """shouldPrepareNewCluster."""
        if active is None and pending is None:
            return True
        cluster = pending if pending is not None else active
        assert cluster is not None
        if same_spec(self.rs, cluster) or groups_appended(self.rs, cluster):
            return False
        return zero_downtime_enabled(self.rs, self.cfg)

    # -- the head's serve label ----------------------------------------------------------------------------

    def serve_labels(self) -> None:
        for name in (self.active_name, self.pending_name):
            o = self.obs(name)
            if o is None or o.head_pod is None:
                continue
            want = head_serve_label(o.head_pod, o.head_proxy, self.exclude_head)
            if want is not None and labels_of(o.head_pod).get(C.LABEL_SERVE) != want:
                self.actions.append(SetServeLabel(name_of(o.head_pod), want))

    # -- Serve -------------------------------------------------------------------------------------------------

    def reconcile_serve(
        self, name: str, cluster: Mapping[str, Any], *, apply: bool
    ) -> tuple[bool, Obj | None]:
        """(apps ready, application statuses or None when unknown). With `apply`, PUT the config when the
        cluster has not got this one yet, or Ray lost it (0 applications: a head restarted without GCS FT)."""
        o = self.obs(name)
        if o is None or not head_ready(cluster) or o.serve is None or o.serve.error:
            return False, None
        apps = dict(o.serve.apps or {})
        text = self.serve_text
        overrides = self.overrides_for(apps)
        want = SDB.applied_hash(text, overrides)
        self.wanted_hash[name] = want
        have = annotations_of(cluster).get(C.ANN_SERVE_CONFIG_HASH)
        needed = not have or not apps or have != want
        if apply and needed and text.strip():
            try:
                config = SDB.fold(B.serve_config(text), overrides)
            except B.ServeConfigError as e:
                self.event("Warning", C.EV_FAILED_UPDATE_SERVE_APPLICATIONS, str(e))
            else:
                self.actions.append(ApplyServeConfig(name, config, want))
        # Just (re)applied: what Ray said describes the previous config.
        ready = not needed and apps_running(apps)
        return ready, app_statuses(apps)

    def overrides_for(self, cluster_apps: Mapping[str, Any] | None) -> dict[SDB.Key, int]:
        """The scale targets' numbers for the config PUT to a cluster whose Serve reports these apps."""
        if not self.targets or self.serve_obj is None:
            return {}
        return SP.overrides(self.rs, self.targets, self.serve_obj, cluster_apps, self.active_apps)

    # -- scale targets (RayServeDeployments) -------------------------------------------------------------------

    def scale_targets(self) -> None:
        """One RayServeDeployment per deployment the active cluster runs, each with its status."""
        if not self.cfg.serve_deployment_targets or self.serve_obj is None:
            return
        name = self.active_name
        o = self.obs(name)
        if o is None or o.serve is None or o.serve.error or not head_ready(o.cluster):
            return
        view = SP.ClusterView(name, o.serve.apps, o.pod_groups, o.pods_by_ip)
        want = self.wanted_hash.get(name) or SDB.applied_hash(
            self.serve_text, self.overrides_for(o.serve.apps)
        )
        applied = annotations_of(o.cluster).get(C.ANN_SERVE_CONFIG_HASH) == want and bool(o.serve.apps)
        plan = SP.plan(self.rs, self.serve_obj, self.targets, view, applied=applied, now=self.now)
        for n in plan.notes:
            self.event(n.type, n.reason, n.message)
        self.actions.extend(CreateServeDeployment(t) for t in plan.create)
        self.actions.extend(DeleteServeDeployment(t, why) for t, why in plan.delete)
        self.actions.extend(UpdateServeDeployment(u) for u in plan.update)

    def failed_apps_events(self, role: str, name: str, apps: Obj | None, other: str) -> list[str]:
        """A Warning event for each application that has just failed; returns their descriptions."""
        if not apps:
            return []
        key = "pendingServiceStatus" if role == "pending" else "activeServiceStatus"
        old_sec = self.old.get(key) or {}
        old_apps = (old_sec.get("applicationStatuses") or {}) if old_sec.get("rayClusterName") == name else {}
        out: list[str] = []
        for app, st in sorted(apps.items()):
            status = str(st.get("status") or "")
            if status not in FAILED_APP_STATES:
                continue
            msg = str(st.get("message") or "").strip()
            desc = f"application {app!r} is {status}" + (f": {msg}" if msg else "")
            out.append(desc)
            if (old_apps.get(app) or {}).get("status") == status:
                continue
            # An event note holds 1 KiB and Ray's message is often a traceback: the event names the
            # error (a traceback's last line), the status keeps the whole message.
            brief = f"application {app!r} is {status}" + (f": {_last_line(msg)}" if msg else "")
            text = f"Serve {brief} (RayCluster {self.ref(name)})."
            if role == "pending" and other:
                text += f" The active RayCluster {self.ref(other)} keeps serving; the upgrade waits."
            self.event("Warning", C.EV_SERVE_APPLICATION_FAILED, text)
        return out

    # -- Services -------------------------------------------------------------------------------------------------

    def reconcile_services(
        self, target: str, cluster: Mapping[str, Any], *, create_only: bool = False
    ) -> bool:
        """Create the head and serve Services, or point them at `target`. False when they cannot be built."""
        try:
            want_serve = B.build_serve_service(self.rs, cluster)
        except B.ServeConfigError as e:
            self.event("Warning", C.EV_FAILED_CREATE_SERVICE, str(e))
            return False
        want_head = B.build_head_service_for(self.rs, cluster, self.cfg.build_options)
        for have, want in ((self.world.head_service, want_head), (self.world.serve_service, want_serve)):
            if have is None or is_terminating(have):
                if have is None:
                    self.actions.append(CreateService(want))
            elif B.service_cluster(have) != target and not create_only:
                self.actions.append(SwitchService(name_of(want), B.switched_service_spec(have, want), target))
        return True

    # -- status ---------------------------------------------------------------------------------------------

    def conditions(self, blocked: list[str]) -> None:
        if not _find(self.conds, C.COND_RS_READY) and not _find(self.conds, C.COND_RS_UPGRADE_IN_PROGRESS):
            self.cond(C.COND_RS_READY, "False", C.RS_REASON_INITIALIZING, INITIALIZING_MESSAGE)
            self.cond(C.COND_RS_UPGRADE_IN_PROGRESS, "False", C.RS_REASON_INITIALIZING, INITIALIZING_MESSAGE)
        endpoints = int(self.st.get("numServeEndpoints") or 0)
        if endpoints > 0:
            self.cond(
                C.COND_RS_READY,
                "True",
                C.RS_REASON_NON_ZERO_SERVE_ENDPOINTS,
                "Number of serve endpoints is greater than 0",
            )
        elif _cond_is(self.conds, C.COND_RS_READY, "True"):
            self.cond(
                C.COND_RS_READY,
                "False",
                C.RS_REASON_ZERO_SERVE_ENDPOINTS,
                "Number of serve endpoints dropped to 0",
            )
        else:
            self.initializing_timeout()
        active, pending = self.active_name, self.pending_name
        if active and pending:
            msg = "Both active and pending Ray clusters exist"
            if blocked:
                msg += (
                    f". The pending RayCluster {pending} cannot serve yet: {'; '.join(blocked)}. "
                    f"The active RayCluster {active} keeps serving."
                )
            self.cond(C.COND_RS_UPGRADE_IN_PROGRESS, "True", C.RS_REASON_BOTH_CLUSTERS, msg)
        elif active:
            self.cond(
                C.COND_RS_UPGRADE_IN_PROGRESS,
                "False",
                C.RS_REASON_NO_PENDING_CLUSTER,
                "Active Ray cluster exists and no pending Ray cluster",
            )
        else:
            c = _find(self.conds, C.COND_RS_UPGRADE_IN_PROGRESS)
            if c is None or c.get("reason") not in (
                C.RS_REASON_INITIALIZING,
                C.RS_REASON_INITIALIZING_TIMEOUT,
            ):
                self.cond(
                    C.COND_RS_UPGRADE_IN_PROGRESS,
                    "Unknown",
                    C.RS_REASON_NO_ACTIVE_CLUSTER,
                    "No active Ray cluster exists, and the RayService is not initializing.",
                )

    def initializing_timeout(self) -> None:
        timeout = initializing_timeout(self.rs)
        ready = _find(self.conds, C.COND_RS_READY)
        if timeout is None or ready is None:
            return
        if ready.get("status") != "False" or ready.get("reason") != C.RS_REASON_INITIALIZING:
            return
        since = parse_time(ready.get("lastTransitionTime"))
        if since is None:
            return
        spent = (self.now - since).total_seconds()
        if spent < timeout:
            self.requeue_within(timeout - spent + 0.1)
            return
        self.section("activeServiceStatus")["rayClusterName"] = ""
        self.section("pendingServiceStatus")["rayClusterName"] = ""
        self.cond(
            C.COND_RS_READY,
            "False",
            C.RS_REASON_INITIALIZING_TIMEOUT,
            f"RayService failed to become ready within the configured timeout of {go_duration(timeout)}. "
            f"Time spent initializing: {go_duration(spent)}",
        )
        self.event(
            "Warning",
            C.EV_RAYSERVICE_INITIALIZING_TIMEOUT,
            f"RayService initializing timeout exceeded after {go_duration(spent)} "
            f"(configured timeout: {go_duration(timeout)})",
        )

    def run(self) -> None:
        if C.FINALIZER_RAYSERVICE not in (self.md.get("finalizers") or []):
            self.actions.append(AddFinalizer())
        problems = validate_rayservice(self.rs, gates=self.cfg.gates)
        if problems:
            self.validation_failed(problems)
            return
        self.after_validation()
        if self.suspend():
            return
        left = self.clean_up()
        if _cond_is(self.conds, C.COND_RS_READY, "False", C.RS_REASON_INITIALIZING_TIMEOUT):
            # Terminal (as KubeRay v1.7): only the clean-up above runs until the RayService is recreated.
            if not left:
                self.requeue = None
            return
        self.upgrade()

    def upgrade(self) -> None:
        """Clusters, serve labels, Serve config, Services and status, for the NewCluster and None strategies
        (the incremental one overrides this: rayservice_incremental.py)."""
        active, pending = self.reconcile_clusters()
        self.serve_labels()
        a_name, p_name = self.active_name, self.pending_name

        p_ready, p_apps, blocked = False, None, []
        if pending is not None:
            p_ready, p_apps = self.reconcile_serve(p_name, pending, apply=True)
            blocked = self.failed_apps_events("pending", p_name, p_apps, a_name if active is not None else "")
            po = self.obs(p_name)
            if p_ready and po is not None:
                serving = po.serving_pods + (1 if head_can_serve(po, self.exclude_head) else 0)
                if serving == 0:
                    p_ready = False
                    blocked.append(
                        "its Serve applications are RUNNING but no Ready pod labelled ray.io/serve=true "
                        "answers /-/healthz yet"
                    )
            elif not p_ready and not blocked and active is not None:
                blocked.append(self.waiting_reason(p_name, pending, p_apps))
        a_ready, a_apps = False, None
        if active is not None:
            # The active cluster gets the config only when no upgrade runs or is about to start.
            apply = pending is None and not self.needs_new_cluster(active, None)
            a_ready, a_apps = self.reconcile_serve(a_name, active, apply=apply)
            self.failed_apps_events("active", a_name, a_apps, "")

        target = ""
        if p_ready:
            target = p_name
        elif a_ready and (
            pending is None or self.world.serve_service is None or self.world.head_service is None
        ):
            # During an upgrade the Services only ever move forward; the active cluster is a target only
            # to recreate a Service someone deleted.
            target = a_name
        switched_to = B.service_cluster(self.world.serve_service)
        if target:
            cluster = pending if target == p_name else active
            assert cluster is not None
            create_only = target == a_name and pending is not None
            if self.reconcile_services(target, cluster, create_only=create_only) and not create_only:
                switched_to = target
        self.status(active, pending, a_apps, p_apps, switched_to, blocked)
        self.scale_targets()

    def waiting_reason(self, name: str, cluster: Mapping[str, Any], apps: Obj | None) -> str:
        if not head_ready(cluster):
            return "its head Pod is not ready yet"
        if apps is None:
            o = self.obs(name)
            err = o.serve.error if o is not None and o.serve is not None else ""
            return (
                f"its dashboard did not answer ({err})" if err else "its Serve applications are unknown yet"
            )
        if not apps:
            return "its Serve applications are being deployed"
        waiting = [f"{a} is {s.get('status')}" for a, s in sorted(apps.items()) if s.get("status") != RUNNING]
        return "Serve application " + ", ".join(waiting) if waiting else "its Serve config is being applied"

    def status(
        self,
        active: Mapping[str, Any] | None,
        pending: Mapping[str, Any] | None,
        a_apps: Obj | None,
        p_apps: Obj | None,
        switched_to: str,
        blocked: list[str],
    ) -> None:
        if self.generation is not None:
            self.st["observedGeneration"] = self.generation
        a_sec, p_sec = self.section("activeServiceStatus"), self.section("pendingServiceStatus")
        for sec, cluster, apps in ((a_sec, active, a_apps), (p_sec, pending, p_apps)):
            sec["rayClusterStatus"] = clone(dict(cluster.get("status") or {})) if cluster is not None else {}
            if apps is not None:
                sec["applicationStatuses"] = apps
                if not apps:
                    sec.pop("applicationStatuses")
            elif cluster is None:
                sec.pop("applicationStatuses", None)
        promoted = bool(self.pending_name) and switched_to == self.pending_name
        if promoted:
            self.st["activeServiceStatus"] = self.st["pendingServiceStatus"]
            self.st["pendingServiceStatus"] = {}
            blocked = []
            active, pending = pending, None
        elif (
            pending is not None
            and active is not None
            and same_spec(self.rs, active)
            and not same_spec(self.rs, pending)
            and _stamped_by_us(active, self.cfg)
        ):
            # The spec went back to what the active cluster runs: the upgrade is cancelled (the pending
            # cluster is deleted after the delay) rather than a third cluster started.
            self.st["pendingServiceStatus"] = {}
            blocked = []
            pending = None
        if not promoted and self.needs_new_cluster(active, pending):
            self.st["pendingServiceStatus"] = {"rayClusterName": B.cluster_name(self.rs, self.world.suffix)}
            blocked = []
        self.st["numServeEndpoints"] = self.world.serve_endpoints
        self.conditions(blocked)
        self.st["serviceStatus"] = (
            C.RS_SERVICE_STATUS_RUNNING if _cond_is(self.conds, C.COND_RS_READY, "True") else ""
        )


def _comparable(status: Mapping[str, Any]) -> str:
    """What a status write is worth: everything but lastUpdateTime and the copied RayCluster statuses
    (KubeRay's InconsistentRayServiceStatuses ignores those too: a RayCluster's status changes often)."""
    s = clone(dict(status))
    s.pop("lastUpdateTime", None)
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        sec = s.get(key)
        if isinstance(sec, dict):
            sec.pop("rayClusterStatus", None)
            if not sec:
                s.pop(key)
    if not s.get("conditions"):
        s.pop("conditions", None)
    for key in ("serviceStatus", "numServeEndpoints"):
        if not s.get(key):
            s.pop(key, None)
    return json.dumps(s, sort_keys=True)


def decide(
    rayservice: Mapping[str, Any],
    world: World,
    config: RayServiceConfig | None = None,
    *,
    step: type[_Step] | None = None,
) -> Decision:
    """One reconcile of a RayService: the new status and what to do, in order. `step` replaces how the
    clusters are upgraded and served (rayservice_incremental.IncrementalStep for that strategy)."""
    cfg = config or RayServiceConfig()
    s = (step or _Step)(rayservice, world, cfg)
    managed_by = s.spec.get("managedBy")
    if managed_by and managed_by != C.MANAGED_BY_KUBERAY:
        return Decision(status=s.old)
    if is_terminating(rayservice):
        s.on_delete()
        return Decision(status=s.old, actions=s.actions, requeue_after=s.requeue)
    s.run()
    changed = _comparable(s.st) != _comparable(s.old)
    if changed:
        s.st["lastUpdateTime"] = s.now_s
    return Decision(status=s.st, actions=s.actions, requeue_after=s.requeue, status_changed=changed)


def _last_line(text: str, limit: int = 400) -> str:
    """The last non-empty line of `text`, at most `limit` characters (its end kept)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else "..." + last[-(limit - 3) :]
