"""The RayJob state machine as a pure function (KubeRay `ray-operator/controllers/ray/rayjob_controller.go`;
docs/compatibility.md#rayjob).

`decide(rayjob, world, config)` maps the RayJob and what the reconciler observed (its RayCluster, head Service,
submitter Job, head pod, the Ray job as the dashboard reports it, the time, two random suffixes) to the new
status plus an ordered list of actions. The I/O shell (rayjob.py) runs the actions in order and writes the
status only if every action succeeded, so a status never claims something that did not happen.

Restart safety (docs/compatibility.md#rayjob): the submission id and the cluster name are chosen in the New
step, whose only side effect is the finalizer; they reach the API server before any cluster is created or job
submitted. Every later step reuses them, so an operator restarted at any point looks for the same cluster and
the same job id: HTTPMode submits only after the dashboard said 404 for that id, and "id already used" counts
as submitted; K8sJobMode's submitter runs `ray job status` before `ray job submit`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from rayop.api import constants as C
from rayop.api import features
from rayop.base.times import format_time, parse_time
from rayop.base.types import Obj
from rayop.builders import rayjob as B
from rayop.ray.dashboard import JobInfo
from rayop.validation import validate_rayjob, validate_rayjob_status

# JobDeploymentStatus values (rayjob_types.go).
NEW: Final = ""
INITIALIZING: Final = "Initializing"
WAITING: Final = "Waiting"
RUNNING: Final = "Running"
COMPLETE: Final = "Complete"
FAILED: Final = "Failed"
VALIDATION_FAILED: Final = "ValidationFailed"
SUSPENDING: Final = "Suspending"
SUSPENDED: Final = "Suspended"
RETRYING: Final = "Retrying"
DEPLOYMENT_TERMINAL: Final = frozenset({COMPLETE, FAILED})

# JobStatus values (Ray's, plus "" = not submitted yet).
JOB_NEW: Final = ""
JOB_PENDING: Final = "PENDING"
JOB_RUNNING: Final = "RUNNING"
JOB_STOPPED: Final = "STOPPED"
JOB_SUCCEEDED: Final = "SUCCEEDED"
JOB_FAILED: Final = "FAILED"
JOB_TERMINAL: Final = frozenset({JOB_STOPPED, JOB_SUCCEEDED, JOB_FAILED})

# Failure reasons (JobFailedReason).
REASON_SUBMISSION_FAILED: Final = "SubmissionFailed"
REASON_DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
REASON_PRE_RUNNING_DEADLINE_EXCEEDED: Final = "PreRunningDeadlineExceeded"
REASON_APP_FAILED: Final = "AppFailed"
REASON_TRANSITION_GRACE_EXCEEDED: Final = "JobDeploymentStatusTransitionGracePeriodExceeded"
REASON_STATUS_CHECK_TIMEOUT: Final = "JobStatusCheckTimeoutExceeded"
REASON_VALIDATION_FAILED: Final = "ValidationFailed"
# Failures that a retry cannot fix: the deadline is per RayJob, the status check failing means we lost the job.
NO_RETRY_REASONS: Final = frozenset({REASON_DEADLINE_EXCEEDED, REASON_STATUS_CHECK_TIMEOUT})

EV_INVALID_RAYJOB_SPEC: Final = C.EV_INVALID_RAYJOB_SPEC
EV_RAYCLUSTER_NOT_FOUND: Final = C.EV_RAYCLUSTER_NOT_FOUND

# Deletion policies, most far-reaching first (executed in this order when several are overdue).
DELETE_SELF: Final = "DeleteSelf"
DELETE_CLUSTER: Final = "DeleteCluster"
DELETE_WORKERS: Final = "DeleteWorkers"
DELETE_NONE: Final = "DeleteNone"
POLICY_IMPACT: Final = {DELETE_SELF: 3, DELETE_CLUSTER: 2, DELETE_WORKERS: 1, DELETE_NONE: 0}

CLUSTER_SELECTOR_KEY: Final = C.LABEL_CLUSTER


@dataclass(frozen=True)
class RayJobConfig:
    """Operator-wide settings the machine reads (env vars and gates in KubeRay)."""

    cluster_domain: str = C.DEFAULT_CLUSTER_DOMAIN
    requeue_seconds: float = 3.0
    transition_grace_seconds: int = 300
    status_check_timeout_seconds: int = 300
    submitter_finished_timeout_seconds: int = 30
    delete_rayjob_after_finish: bool = False
    deletion_policy_gate: bool = True
    sidecar_submitter_restart: bool = False
    login_shell: bool = False
    head_cluster_ip_service: bool = False
    gates: Mapping[str, bool] = field(default_factory=dict)

    @property
    def deletion_gate(self) -> bool:
        return bool(self.gates.get(features.RAY_JOB_DELETION_POLICY, self.deletion_policy_gate))


@dataclass(frozen=True)
class JobLookup:
    """The answer to GET /api/jobs/<id>: the job, 404, or an error (dashboard down, timeout...)."""

    info: JobInfo | None = None
    not_found: bool = False
    error: str = ""


@dataclass(frozen=True)
class World:
    """What the reconciler observed. None means absent (or, for `job`, not asked)."""

    now: datetime
    cluster: Obj | None = None
    head_service: Obj | None = None
    submitter: Obj | None = None
    head_pod: Obj | None = None
    job_head_service: Obj | None = None
    job: JobLookup | None = None
    suffixes: tuple[str, str] = ("xxxxx", "yyyyy")


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
class CreateSubmitter:
    job: Obj


@dataclass(frozen=True)
class CreateService:
    service: Obj


@dataclass(frozen=True)
class UpdateServiceSelector:
    """Point `<rayjob>-head-svc` at the current attempt's cluster (its spec, keeping the ClusterIP)."""

    name: str
    spec: Obj


@dataclass(frozen=True)
class SubmitJob:
    """HTTPMode submission; DuplicateSubmission from the dashboard means it is already there."""

    request: Obj


@dataclass(frozen=True)
class StopJob:
    job_id: str
    dashboard_url: str
    cluster_name: str


@dataclass(frozen=True)
class DeleteCluster:
    name: str


@dataclass(frozen=True)
class DeleteSubmitter:
    name: str


@dataclass(frozen=True)
class SuspendWorkers:
    cluster_name: str


@dataclass(frozen=True)
class DeleteSelf:
    pass


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


Action = (
    AddFinalizer
    | RemoveFinalizer
    | CreateCluster
    | CreateSubmitter
    | CreateService
    | UpdateServiceSelector
    | SubmitJob
    | StopJob
    | DeleteCluster
    | DeleteSubmitter
    | SuspendWorkers
    | DeleteSelf
    | Event
)


@dataclass
class Decision:
    status: Obj
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None
    status_changed: bool = False
    old_deployment_status: str = ""

    @property
    def new_deployment_status(self) -> str:
        return str(self.status.get("jobDeploymentStatus") or "")


# Time helpers -----------------------------------------------------------------------------------------


fmt_time = format_time


def fmt_ms(ms: int) -> str:
    return fmt_time(datetime.fromtimestamp(ms / 1000, tz=UTC))


# Validation ---------------------------------------------------------------------------------------------


def validate(rayjob: Mapping[str, Any], config: RayJobConfig) -> list[str]:
    """Problems that make the RayJob unrunnable; each becomes ValidationFailed with this text.

    The shared rules (the webhook's, KubeRay's ValidateRayJobSpec/Status) plus what only the submission
    needs: an entrypoint outside InteractiveMode and a Ray version that knows --metadata-json.
    """
    gates = dict(config.gates)
    gates[features.RAY_JOB_DELETION_POLICY] = config.deletion_gate
    errs = [str(e) for e in validate_rayjob(rayjob, gates=gates)]
    errs += [str(e) for e in validate_rayjob_status(rayjob)]
    spec = rayjob.get("spec") or {}
    mode = spec.get("submissionMode") or B.K8S_JOB_MODE
    if mode != B.INTERACTIVE_MODE and not str(spec.get("entrypoint") or "").strip():
        errs.append(f"spec.entrypoint: Required value: must be set in {mode}")
    if spec.get("metadata"):
        try:
            B._metadata(rayjob)
        except B.JobSpecError as e:
            errs.append(f"spec.metadata: Invalid value: {e}")
    return errs


# Observation helpers ----------------------------------------------------------------------------------


def _job_condition(job: Mapping[str, Any] | None, ctype: str) -> Obj | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return dict(c)
    return None


def submitter_failed(job: Mapping[str, Any] | None) -> Obj | None:
    return _job_condition(job, "Failed")


def submitter_finished_at(job: Mapping[str, Any] | None) -> datetime | None:
    """IsJobFinished: the Complete or Failed condition's lastTransitionTime."""
    for t in ("Complete", "Failed"):
        c = _job_condition(job, t)
        if c is not None:
            return parse_time(c.get("lastTransitionTime")) or datetime.min.replace(tzinfo=UTC)
    return None


def sidecar_terminated(head_pod: Mapping[str, Any] | None) -> Obj | None:
    """The submitter sidecar's `terminated` state in the head pod, if it has ended."""
    for cs in ((head_pod or {}).get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == C.SUBMITTER_CONTAINER_NAME:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                out = dict(term)
                out["restartCount"] = cs.get("restartCount", 0)
                return out
    return None


def _all_workers_suspended(cluster: Mapping[str, Any]) -> bool:
    groups = (cluster.get("spec") or {}).get("workerGroupSpecs") or []
    return all(bool(g.get("suspend")) for g in groups)


def _deleting(obj: Mapping[str, Any] | None) -> bool:
    return bool(((obj or {}).get("metadata") or {}).get("deletionTimestamp"))


def _external_manager(spec: Mapping[str, Any]) -> str | None:
    m = spec.get("managedBy")
    return str(m) if m and m != C.MANAGED_BY_KUBERAY else None


# The machine ------------------------------------------------------------------------------------------


class _Step:
    """Mutable working state of one decide() call."""

    def __init__(self, rayjob: Mapping[str, Any], world: World, config: RayJobConfig) -> None:
        self.rj = rayjob
        self.md: Mapping[str, Any] = rayjob.get("metadata") or {}
        self.spec: Mapping[str, Any] = rayjob.get("spec") or {}
        self.old: Obj = copy.deepcopy(dict(rayjob.get("status") or {}))
        self.st: Obj = copy.deepcopy(self.old)
        self.world = world
        self.cfg = config
        self.now = world.now
        self.actions: list[Action] = []
        self.requeue: float | None = config.requeue_seconds
        self.mode: str = self.spec.get("submissionMode") or B.K8S_JOB_MODE
        self.selector: Mapping[str, str] = self.spec.get("clusterSelector") or {}

    # status helpers

    @property
    def deployment(self) -> str:
        return str(self.st.get("jobDeploymentStatus") or "")

    def set_deployment(self, value: str, reason: str | None = None, message: str | None = None) -> None:
        self.st["jobDeploymentStatus"] = value
        if reason is not None:
            self.st["reason"] = reason
        if message is not None:
            self.st["message"] = message

    def fail(self, reason: str, message: str) -> None:
        self.set_deployment(FAILED, reason, message)

    def rayjob_with_status(self) -> Obj:
        """The RayJob as the builders should see it: with the status this step computed."""
        rj = dict(self.rj)
        rj["status"] = self.st
        return rj

    def event(self, etype: str, reason: str, message: str) -> None:
        self.actions.append(Event(etype, reason, message))

    # checks shared by states (each returns True when it changed the deployment status)

    def check_suspend(self) -> bool:
        if self.spec.get("suspend") and self.deployment in (INITIALIZING, RUNNING):
            self.set_deployment(SUSPENDING)
            return True
        return False

    def check_active_deadline(self) -> bool:
        ads = self.spec.get("activeDeadlineSeconds")
        start = parse_time(self.st.get("startTime"))
        if ads is None or start is None or self.now < start + timedelta(seconds=int(ads)):
            return False
        self.fail(
            REASON_DEADLINE_EXCEEDED,
            f"The RayJob has passed the activeDeadlineSeconds. StartTime: {fmt_time(start)}. "
            f"ActiveDeadlineSeconds: {int(ads)}",
        )
        self.stop_ray_job()
        return True

    def stop_ray_job(self) -> None:
        """Stop a Ray job we give up on. Deleting its cluster would kill it too, but a selected (shared) or
        kept cluster would run it on after the RayJob already says Failed."""
        if (
            self.old.get("jobDeploymentStatus") == RUNNING
            and self.st.get("jobStatus") not in JOB_TERMINAL
            and self.st.get("jobId")
            and self.st.get("dashboardURL")
        ):
            self.actions.append(
                StopJob(
                    str(self.st["jobId"]),
                    str(self.st["dashboardURL"]),
                    str(self.st.get("rayClusterName") or ""),
                )
            )

    def check_pre_running_deadline(self) -> bool:
        prd = self.spec.get("preRunningDeadlineSeconds")
        start = parse_time(self.st.get("startTime"))
        if prd is None or start is None or self.now < start + timedelta(seconds=int(prd)):
            return False
        self.fail(
            REASON_PRE_RUNNING_DEADLINE_EXCEEDED,
            f"The RayJob did not reach Running within preRunningDeadlineSeconds ({int(prd)}s) of "
            f"{fmt_time(start)}; it was still {self.deployment}.",
        )
        return True

    def check_transition_grace(self) -> bool:
        if self.st.get("jobStatus") not in JOB_TERMINAL:
            return False
        end = parse_time((self.st.get("rayJobInfo") or {}).get("endTime"))
        if end is None or self.now < end + timedelta(seconds=self.cfg.transition_grace_seconds):
            return False
        self.set_deployment(
            FAILED if self.st.get("jobStatus") == JOB_FAILED else COMPLETE,
            REASON_TRANSITION_GRACE_EXCEEDED,
            "JobDeploymentStatus does not transition to Complete or Failed within the grace period after "
            "JobStatus reaches a terminal state.",
        )
        return True

    # states

    def on_new(self) -> None:
        if C.FINALIZER_RAYJOB not in (self.md.get("finalizers") or []):
            self.actions.append(AddFinalizer())
        name = str(self.md["name"])
        if self.mode != B.INTERACTIVE_MODE and not self.st.get("jobId"):
            self.st["jobId"] = self.spec.get("jobId") or B.suffixed_name(name, self.world.suffixes[0])
        if not self.st.get("rayClusterName"):
            self.st["rayClusterName"] = (
                self.selector.get(CLUSTER_SELECTOR_KEY)
                if self.selector
                else B.suffixed_name(name, self.world.suffixes[1])
            )
        self.st["jobStatus"] = JOB_NEW
        self.set_deployment(INITIALIZING)
        self.st["startTime"] = fmt_time(self.now)

    def on_initializing(self) -> None:
        if self.check_suspend() or self.check_active_deadline() or self.check_pre_running_deadline():
            return
        cluster = self.world.cluster
        cname = str(self.st.get("rayClusterName") or "")
        if cluster is None:
            self.cluster_missing()
            if self.selector:
                self.st["message"] = (
                    f"Waiting for the RayCluster {cname} selected by clusterSelector to exist"
                )
            return
        self.st["rayClusterStatus"] = copy.deepcopy(cluster.get("status") or {})
        if not self.st.get("dashboardURL"):
            if (cluster.get("status") or {}).get("state") != C.STATE_READY:
                return
            url = B.dashboard_url_from_service(self.world.head_service or {}, self.cfg.cluster_domain)
            if not url:
                return
            self.st["dashboardURL"] = url
        if self.mode == B.INTERACTIVE_MODE:
            self.set_deployment(WAITING)
            return
        if self.mode == B.K8S_JOB_MODE and self.world.submitter is None:
            self.actions.append(
                CreateSubmitter(
                    B.build_submitter_job(
                        self.rayjob_with_status(), cluster, login_shell=self.cfg.login_shell
                    )
                )
            )
        self.set_deployment(RUNNING)

    def on_waiting(self) -> None:
        if self.check_pre_running_deadline():
            return
        if self.spec.get("jobId"):
            self.st["jobId"] = self.spec["jobId"]
            self.set_deployment(RUNNING)

    def on_running(self) -> None:
        if self.check_suspend() or self.check_active_deadline() or self.check_transition_grace():
            return
        cluster = self.world.cluster
        if cluster is None:
            self.cluster_missing()
            return
        if not self.selector:
            self.reconcile_head_service(cluster)
        finished_at: datetime | None = None
        if self.mode == B.K8S_JOB_MODE:
            sub = self.world.submitter
            if sub is None:
                # Deleted behind our back: the submitter is idempotent (status check first), so recreate it.
                self.actions.append(
                    CreateSubmitter(
                        B.build_submitter_job(
                            self.rayjob_with_status(), cluster, login_shell=self.cfg.login_shell
                        )
                    )
                )
                return
            failed = submitter_failed(sub)
            if failed is not None:
                self.submitter_failed(
                    f"Job submission has failed. Reason: {failed.get('reason', '')}. "
                    f"Message: {failed.get('message', '')}"
                )
                return
            finished_at = submitter_finished_at(sub)
        elif self.mode == B.SIDECAR_MODE:
            pod = self.world.head_pod
            if pod is None:
                self.fail(REASON_APP_FAILED, "Ray head pod not found.")
                return
            term = sidecar_terminated(pod)
            if term is not None:
                code = int(term.get("exitCode") or 0)
                limit = (self.spec.get("submitterConfig") or {}).get(
                    "backoffLimit", B.DEFAULT_SUBMITTER_BACKOFF_LIMIT
                )
                restarts_left = self.cfg.sidecar_submitter_restart and int(
                    term.get("restartCount") or 0
                ) < int(limit)
                if code != 0 and not restarts_left:
                    self.submitter_failed(
                        f"Ray head pod container {C.SUBMITTER_CONTAINER_NAME} terminated with exit code {code}: "
                        f"{term.get('reason', '')}"
                    )
                    return
                if code == 0 or not restarts_left:
                    finished_at = parse_time(term.get("finishedAt")) or self.now
        lookup = self.world.job
        if lookup is None:
            return
        if lookup.error:
            if not self.check_submitter_finished_timeout(finished_at):
                self.status_check_failed(lookup.error)
            return
        self.st.pop("jobStatusCheckFailureStartTime", None)
        if lookup.not_found or lookup.info is None:
            if self.mode == B.HTTP_MODE:
                self.actions.append(
                    SubmitJob(B.build_submit_request(self.rj, str(self.st.get("jobId") or "")))
                )
            elif finished_at is not None:
                self.fail(REASON_APP_FAILED, "Submitter completed but Ray job not found in RayCluster.")
            return
        info = lookup.info
        terminal = info.terminal
        if self.mode in (B.K8S_JOB_MODE, B.SIDECAR_MODE):
            # Wait for the submitter too, so its logs are complete when users look (KubeRay #1919).
            terminal = terminal and finished_at is not None
        if not info.terminal and self.check_submitter_finished_timeout(finished_at):
            # Checked against the answer just read, not the last status: after an operator restart a job
            # that succeeded meanwhile must not be failed for its stale RUNNING.
            return
        deployment, reason = RUNNING, ""
        if terminal:
            deployment = COMPLETE
            if info.status == JOB_FAILED:
                deployment, reason = FAILED, REASON_APP_FAILED
        self.st["rayClusterStatus"] = copy.deepcopy(cluster.get("status") or {})
        self.st["jobStatus"] = info.status
        self.set_deployment(deployment, reason, info.message)
        rji: Obj = dict(self.st.get("rayJobInfo") or {})
        if info.start_time:
            rji["startTime"] = fmt_ms(info.start_time)
        if info.end_time:
            rji["endTime"] = fmt_ms(info.end_time)
        if rji:
            self.st["rayJobInfo"] = rji

    def cluster_missing(self) -> None:
        if self.selector:
            self.event(
                "Warning",
                EV_RAYCLUSTER_NOT_FOUND,
                f"RayCluster {self.md.get('namespace')}/{self.st.get('rayClusterName')} set in the clusterSelector "
                "is not found. It must be created manually",
            )
            return
        # KubeRay's getOrCreateRayClusterInstance: a vanished cluster is recreated under the same name.
        self.actions.append(
            CreateCluster(
                B.build_rayjob_cluster(
                    self.rayjob_with_status(),
                    str(self.st.get("rayClusterName")),
                    sidecar_restart=self.cfg.sidecar_submitter_restart,
                )
            )
        )

    def reconcile_head_service(self, cluster: Mapping[str, Any]) -> None:
        want = B.build_rayjob_head_service(
            self.rj, cluster, head_cluster_ip_service=self.cfg.head_cluster_ip_service
        )
        have = self.world.job_head_service
        if have is None:
            self.actions.append(CreateService(want))
            return
        have_sel = ((have.get("spec") or {}).get("selector") or {}).get(C.LABEL_CLUSTER)
        if have_sel != want["spec"]["selector"].get(C.LABEL_CLUSTER):
            spec = dict(want["spec"])
            if (have.get("spec") or {}).get("clusterIP"):
                # Immutable once set.
                spec["clusterIP"] = have["spec"]["clusterIP"]
            self.actions.append(UpdateServiceSelector(str(want["metadata"]["name"]), spec))

    def submitter_failed(self, message: str) -> None:
        # A user-code failure was already recorded from the dashboard by an earlier reconcile.
        if self.st.get("jobStatus") == JOB_FAILED:
            self.fail(REASON_APP_FAILED, str(self.st.get("message") or "The Ray job failed."))
        else:
            self.fail(REASON_SUBMISSION_FAILED, message)

    def check_submitter_finished_timeout(self, finished_at: datetime | None) -> bool:
        if finished_at is None:
            return False
        if self.now < finished_at + timedelta(seconds=self.cfg.submitter_finished_timeout_seconds):
            return False
        self.st["jobStatus"] = JOB_FAILED
        self.fail(
            REASON_TRANSITION_GRACE_EXCEEDED,
            f"The RayJob submitter finished at {finished_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} but "
            f"the ray job did not reach terminal state within {self.cfg.submitter_finished_timeout_seconds}s",
        )
        return True

    def status_check_failed(self, error: str) -> None:
        first = parse_time(self.st.get("jobStatusCheckFailureStartTime"))
        if first is None:
            self.st["jobStatusCheckFailureStartTime"] = fmt_time(self.now)
        elif self.now >= first + timedelta(seconds=self.cfg.status_check_timeout_seconds):
            self.fail(
                REASON_STATUS_CHECK_TIMEOUT,
                f"Failed to get the status of Ray job {self.st.get('jobId')} for "
                f"{self.cfg.status_check_timeout_seconds}s since {fmt_time(first)}: {error}",
            )

    def on_suspending_or_retrying(self) -> None:
        pending = False
        cluster = self.world.cluster
        if cluster is not None and not self.selector:
            pending = True
            if not _deleting(cluster):
                self.actions.append(DeleteCluster(str(cluster["metadata"]["name"])))
        sub = self.world.submitter
        if sub is not None and self.mode not in (B.HTTP_MODE, B.SIDECAR_MODE):
            pending = True
            if not _deleting(sub):
                self.actions.append(DeleteSubmitter(str(sub["metadata"]["name"])))
        if pending:
            # Transition only once the compute is released, or a resume could race the old pods.
            return
        if not self.selector:
            self.st["rayClusterStatus"] = {}
            self.st["rayClusterName"] = ""
        for k in ("dashboardURL", "jobId", "message", "reason"):
            self.st[k] = ""
        self.st["rayJobInfo"] = {}
        self.st.pop("jobStatusCheckFailureStartTime", None)
        self.st["jobStatus"] = JOB_NEW
        self.set_deployment(SUSPENDED if self.deployment == SUSPENDING else NEW)

    def on_suspended(self) -> None:
        if not self.spec.get("suspend"):
            self.st["jobStatus"] = JOB_NEW
            self.set_deployment(NEW)
        else:
            self.requeue = None

    def on_finished(self) -> None:
        self.requeue = None
        if self.selector:
            return
        end = parse_time(self.st.get("endTime")) or self.now
        ds = self.spec.get("deletionStrategy")
        if self.cfg.deletion_gate and ds:
            if ds.get("deletionRules"):
                self._deletion_rules(ds["deletionRules"], end)
                return
            policy = DELETE_NONE
            if self.st.get("jobStatus") == JOB_SUCCEEDED:
                policy = (ds.get("onSuccess") or {}).get("policy") or DELETE_NONE
            elif self.st.get("jobStatus") == JOB_FAILED:
                policy = (ds.get("onFailure") or {}).get("policy") or DELETE_NONE
            if policy == DELETE_NONE:
                return
            due = end + timedelta(seconds=int(self.spec.get("ttlSecondsAfterFinished") or 0))
            if self.now < due:
                self.requeue = (due - self.now).total_seconds() + 2
                return
            self._apply_policy(policy)
            return
        if self.spec.get("shutdownAfterJobFinishes"):
            due = end + timedelta(seconds=int(self.spec.get("ttlSecondsAfterFinished") or 0))
            if self.now < due:
                self.requeue = (due - self.now).total_seconds() + 2
                return
            if self.cfg.delete_rayjob_after_finish:
                self.actions.append(DeleteSelf())
            elif self.world.cluster is not None and not _deleting(self.world.cluster):
                # The submitter Job stays: it holds the driver logs and uses no compute once finished.
                self.actions.append(DeleteCluster(str(self.world.cluster["metadata"]["name"])))

    def _policy_done(self, policy: str) -> bool:
        cluster = self.world.cluster
        if policy == DELETE_NONE:
            return True
        if policy == DELETE_SELF:
            return False
        if cluster is None or _deleting(cluster):
            return True
        return policy == DELETE_WORKERS and _all_workers_suspended(cluster)

    def _apply_policy(self, policy: str) -> None:
        if self._policy_done(policy):
            return
        cname = str(self.st.get("rayClusterName") or "")
        if policy == DELETE_SELF:
            self.actions.append(DeleteSelf())
        elif policy == DELETE_CLUSTER:
            self.actions.append(DeleteCluster(cname))
        elif policy == DELETE_WORKERS:
            self.actions.append(SuspendWorkers(cname))

    def _deletion_rules(self, rules: list[Mapping[str, Any]], end: datetime) -> None:
        matching: list[tuple[str, datetime]] = []
        for r in rules:
            cond = r.get("condition") or {}
            js, dps = cond.get("jobStatus"), cond.get("jobDeploymentStatus")
            if (js and js == self.st.get("jobStatus")) or (dps and dps == self.deployment):
                due = end + timedelta(seconds=int(cond.get("ttlSeconds") or 0))
                matching.append((str(r.get("policy") or DELETE_NONE), due))
        overdue = [p for p, due in matching if due <= self.now and not self._policy_done(p)]
        if overdue:
            # One action per reconcile, the most far-reaching first: it may make the others moot.
            self._apply_policy(max(overdue, key=lambda p: POLICY_IMPACT.get(p, 0)))
        future = [due for p, due in matching if due > self.now and not self._policy_done(p)]
        if overdue:
            self.requeue = self.cfg.requeue_seconds
        elif future:
            self.requeue = (min(future) - self.now).total_seconds() + 2

    def after(self) -> None:
        """checkBackoffLimitAndUpdateStatusIfNeeded, counting each attempt's outcome once."""
        old_dep = str(self.old.get("jobDeploymentStatus") or "")
        new_dep = self.deployment
        if new_dep == old_dep:
            return
        failed = int(self.st.get("failed") or 0)
        succeeded = int(self.st.get("succeeded") or 0)
        if new_dep == FAILED:
            failed += 1
        if new_dep == COMPLETE and self.st.get("jobStatus") == JOB_SUCCEEDED:
            succeeded += 1
        self.st["failed"] = failed
        self.st["succeeded"] = succeeded
        backoff = self.spec.get("backoffLimit")
        if (
            new_dep == FAILED
            and backoff is not None
            and failed < int(backoff) + 1
            and self.st.get("reason") not in NO_RETRY_REASONS
        ):
            self.set_deployment(RETRYING)
        if self.deployment in DEPLOYMENT_TERMINAL:
            self.st["endTime"] = fmt_time(self.now)


def decide(rayjob: Mapping[str, Any], world: World, config: RayJobConfig | None = None) -> Decision:
    """One reconcile of a RayJob: the new status and what to do, in order."""
    cfg = config or RayJobConfig()
    s = _Step(rayjob, world, cfg)
    old_dep = s.deployment

    if _external_manager(s.spec):
        return Decision(status=s.old, requeue_after=None, old_deployment_status=old_dep)

    if _deleting(rayjob):
        # The Ray job would outlive its RayJob otherwise (on a selected cluster it would run on forever).
        if s.st.get("jobStatus") not in JOB_TERMINAL and s.st.get("jobId") and s.st.get("dashboardURL"):
            s.actions.append(
                StopJob(str(s.st["jobId"]), str(s.st["dashboardURL"]), str(s.st.get("rayClusterName") or ""))
            )
        if C.FINALIZER_RAYJOB in (s.md.get("finalizers") or []):
            s.actions.append(RemoveFinalizer())
        return Decision(status=s.old, actions=s.actions, requeue_after=None, old_deployment_status=old_dep)

    problems = validate(rayjob, cfg)
    if old_dep == VALIDATION_FAILED:
        gen, seen = s.md.get("generation"), s.old.get("observedGeneration")
        fixed = not problems and gen is not None and seen is not None and int(gen) > int(seen)
        if not fixed or s.st.get("rayClusterName"):
            # Nothing to redo, or resources of a started attempt exist: stays failed (as KubeRay).
            return Decision(status=s.old, requeue_after=None, old_deployment_status=old_dep)
        # Invalid from creation and fixed since: start from scratch, nothing was created.
        s.st.update({"jobStatus": JOB_NEW, "reason": "", "message": ""})
        s.set_deployment(NEW)
        old_dep = NEW
    if problems:
        msg = "; ".join(problems)
        s.set_deployment(VALIDATION_FAILED, REASON_VALIDATION_FAILED, msg)
        s.event(
            "Warning",
            EV_INVALID_RAYJOB_SPEC,
            f"{s.md.get('namespace')}/{s.md.get('name')}: {msg}",
        )
        s.requeue = None
    elif old_dep == NEW:
        s.on_new()
    elif old_dep == INITIALIZING:
        s.on_initializing()
    elif old_dep == WAITING:
        s.on_waiting()
    elif old_dep == RUNNING:
        s.on_running()
    elif old_dep in (SUSPENDING, RETRYING):
        s.on_suspending_or_retrying()
    elif old_dep == SUSPENDED:
        s.on_suspended()
    elif old_dep in DEPLOYMENT_TERMINAL:
        s.on_finished()
    s.after()
    gen = s.md.get("generation")
    if gen is not None:
        s.st["observedGeneration"] = int(gen)
    changed = json.dumps(s.st, sort_keys=True) != json.dumps(s.old, sort_keys=True)
    return Decision(
        status=s.st,
        actions=s.actions,
        requeue_after=s.requeue,
        status_changed=changed,
        old_deployment_status=old_dep,
    )


def reject_submission(
    rayjob: Mapping[str, Any], now: datetime, message: str, config: RayJobConfig | None = None
) -> Obj:
    """The status after the dashboard refused an HTTPMode submission outright (4xx: it will never succeed).

    Failed/SubmissionFailed, counted as a failed attempt and retried on a new cluster within backoffLimit,
    instead of resubmitting the same bad request every few seconds.
    """
    s = _Step(rayjob, World(now=now), config or RayJobConfig())
    s.fail(REASON_SUBMISSION_FAILED, message)
    s.after()
    return s.st
