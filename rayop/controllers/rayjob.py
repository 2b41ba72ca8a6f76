"""The RayJob reconciler: observe, decide (rayjob_machine.decide, pure), act, then write status.

Per reconcile:
  1. read the RayJob live from the API server (not the cache: a stale cached status could make us act on
     an old attempt's names), and observe its RayCluster, head Service, submitter Job and head Pod from the
     shared caches, and the Ray job from the head's dashboard when Running;
  2. decide() returns the new status and ordered actions;
  3. run the actions in order; any failure stops here and the key is requeued with backoff, so the status
     is never written ahead of what actually happened;
  4. write the status (PUT /status with the resourceVersion read in 1) when it changed.

The dashboard is reached straight through the head Service's DNS name or through the API server's service
proxy (KubeRay's --use-kubernetes-proxy); tests and the local stack can map the DNS name to a local address.
"""

from __future__ import annotations

import base64
import copy
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rayop.api import constants as C
from rayop.api import features
from rayop.base.times import parse_time
from rayop.builders import cluster as cl
from rayop.builders import job as B
from rayop.builders.pod import auth_secret_name
from rayop.controllers import rayjob_machine as M
from rayop.controllers.raycluster import RAYCLUSTERS
from rayop.ray.dashboard import (
    DIRECT_TIMEOUT_SECONDS,
    DashboardClient,
    DashboardError,
    DashboardUnavailable,
    DuplicateSubmission,
    JobNotFound,
)
from rayop.runtime.client import JOBS, PODS, SECRETS, SERVICES, ApiClient, ApiError, Resource
from rayop.runtime.controller import Result

Obj = dict[str, Any]
log = logging.getLogger("rayop.controllers.rayjob")

RAYJOBS = Resource(C.GROUP, C.VERSION, C.PLURAL_RAYJOBS, kind=C.KIND_RAYJOB)

NORMAL = "Normal"
WARNING = "Warning"
ACT_CREATE = "Create"
ACT_DELETE = "Delete"
ACT_UPDATE = "Update"
ACT_VALIDATE = "Validate"
ACT_RECONCILE = "Reconcile"

# The same selectors the RayCluster controller uses, so the manager shares one informer per kind.
POD_SELECTOR = f"{C.LABEL_NODE_TYPE} in ({C.NODE_TYPE_HEAD},{C.NODE_TYPE_WORKER},{C.NODE_TYPE_REDIS_CLEANUP})"
JOB_SELECTOR = f"{C.LABEL_CREATED_BY}={C.CREATED_BY_VALUE}"


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(B.RAND_ALPHABET) for _ in range(n))


def _md(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _ref(obj: Mapping[str, Any]) -> str:
    return f"{_md(obj).get('namespace')}/{_md(obj).get('name')}"


# Reaching dashboards ------------------------------------------------------------------------------------


class Dashboards:
    """Makes DashboardClients for a RayJob's head: direct, or through the API server's service proxy.

    `resolve` maps a status.dashboardURL (`<svc>.<ns>.svc.<domain>:<port>`) to the URL to call; the local
    stack and tests use it where cluster DNS does not exist.
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        use_proxy: bool = False,
        resolve: Callable[[str], str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.api = api
        self.use_proxy = use_proxy
        self.resolve = resolve
        self.timeout = timeout

    async def close(self) -> None:
        """Nothing pooled: each DashboardClient owns (and closes) its session, so a manager that stops
        leaves no open connections behind."""

    async def token_for(self, cluster: Mapping[str, Any] | None) -> str | None:
        """The Ray auth token of a token-auth cluster, from its Secret (key `auth_token`)."""
        if not cluster or not cl.is_auth_enabled(cluster):
            return None
        secret = await self.api.get_or_none(SECRETS, auth_secret_name(cluster), _md(cluster).get("namespace"))
        raw = ((secret or {}).get("data") or {}).get(C.AUTH_TOKEN_SECRET_KEY)
        return base64.b64decode(raw).decode() if raw else None

    async def client(self, dashboard_url: str, cluster: Mapping[str, Any] | None) -> DashboardClient:
        token = await self.token_for(cluster)
        if self.use_proxy:
            host = dashboard_url.split("://", 1)[-1].split(":", 1)[0]
            parts = host.split(".")
            svc, ns = parts[0], parts[1] if len(parts) > 1 else str(_md(cluster).get("namespace") or "")
            c = DashboardClient.via_proxy(self.api, ns, svc, token=token)
            if self.timeout:
                c.timeout = self.timeout
            return c
        url = self.resolve(dashboard_url) if self.resolve else dashboard_url
        return DashboardClient.direct(url, token=token, timeout=self.timeout or DIRECT_TIMEOUT_SECONDS)


# Metrics ---------------------------------------------------------------------------------------------------


class RayJobCollector(Collector):
    """kuberay_job_info and kuberay_job_deployment_status from the RayJob cache at scrape time, plus
    kuberay_job_execution_duration_seconds recorded at each attempt's end (kuberay-behaviour.md §9.3)."""

    def __init__(self) -> None:
        self.sources: list[Any] = []
        # (namespace, name) -> (uid, deployment status, retry count, seconds)
        self.durations: dict[tuple[str, str], tuple[str, str, int, float]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "kuberay_job_info",
            "Metadata information about RayJob custom resources",
            labels=["name", "namespace", "uid"],
        )
        status = GaugeMetricFamily(
            "kuberay_job_deployment_status",
            "The RayJob's current deployment status",
            labels=["name", "namespace", "uid", "deployment_status"],
        )
        duration = GaugeMetricFamily(
            "kuberay_job_execution_duration_seconds",
            "Duration of the RayJob CR's JobDeploymentStatus transition from `Initializing` to either the "
            "`Retrying` state or a terminal state, such as `Complete` or `Failed`.",
            labels=["name", "namespace", "uid", "job_deployment_status", "retry_count"],
        )
        live: set[tuple[str, str]] = set()
        for src in self.sources:
            for rj in src.list():
                md = _md(rj)
                name, ns, uid = str(md.get("name", "")), str(md.get("namespace", "")), str(md.get("uid", ""))
                live.add((ns, name))
                info.add_metric([name, ns, uid], 1)
                dep = str((rj.get("status") or {}).get("jobDeploymentStatus") or "New")
                status.add_metric([name, ns, uid, dep], 1)
        for (ns, name), (uid, dep, retries, secs) in list(self.durations.items()):
            if (ns, name) not in live and self.sources:
                continue
            duration.add_metric([name, ns, uid, dep, str(retries)], secs)
        yield info
        yield status
        yield duration

    def observe_transition(
        self, rj: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        old_dep, new_dep = (
            str(old.get("jobDeploymentStatus") or ""),
            str(new.get("jobDeploymentStatus") or ""),
        )
        if old_dep in M.DEPLOYMENT_TERMINAL or not (
            new_dep in M.DEPLOYMENT_TERMINAL or new_dep == M.RETRYING
        ):
            return
        start = parse_time(new.get("startTime") or old.get("startTime"))
        if start is None:
            return
        md = _md(rj)
        secs = max(0.0, (datetime.now(UTC) - start).total_seconds())
        self.durations[(str(md.get("namespace")), str(md.get("name")))] = (
            str(md.get("uid", "")),
            new_dep,
            int(old.get("failed") or 0),
            secs,
        )

    def forget(self, namespace: str, name: str) -> None:
        self.durations.pop((namespace, name), None)


_collector: RayJobCollector | None = None


def register_metrics(source: Any) -> RayJobCollector:
    global _collector
    if _collector is None:
        _collector = RayJobCollector()
        REGISTRY.register(_collector)
    _collector.sources.append(source)
    return _collector


def unregister_metrics(source: Any) -> None:
    if _collector is not None and source in _collector.sources:
        _collector.sources.remove(source)


# The reconciler -------------------------------------------------------------------------------------------


@dataclass
class Store:
    """The caches the reconciler reads (informers in production, fakes in unit tests)."""

    clusters: Any
    services: Any
    jobs: Any
    pods: Any


class RayJobReconciler:
    def __init__(
        self,
        client: ApiClient,
        store: Store,
        recorder: Any,
        dashboards: Dashboards,
        config: M.RayJobConfig,
        *,
        metrics: RayJobCollector | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        suffix: Callable[[], str] = random_suffix,
    ) -> None:
        self.client = client
        self.store = store
        self.recorder = recorder
        self.dashboards = dashboards
        self.cfg = config
        self.metrics = metrics
        self.now = now
        self.suffix = suffix
        # Counters of what this reconciler did, for tests and benchmarks.
        self.submissions = 0
        self.reconciles = 0

    async def reconcile(self, key: Any) -> Result:
        ns, name = (str(key[0]), str(key[1])) if isinstance(key, tuple) else str(key).split("/", 1)
        self.reconciles += 1
        rj = await self.client.get_or_none(RAYJOBS, name, ns)
        if rj is None:
            if self.metrics:
                self.metrics.forget(ns, name)
            return Result()
        world = await self.observe(rj)
        decision = M.decide(rj, world, self.cfg)
        rj = await self.act(rj, decision)
        if rj is None:
            return Result()
        if decision.status_changed:
            await self.write_status(rj, decision.status)
            if self.metrics:
                self.metrics.observe_transition(rj, rj.get("status") or {}, decision.status)
        if decision.requeue_after is not None:
            return Result(requeue_after=max(decision.requeue_after, 0.05))
        return Result()

    # -- observe ------------------------------------------------------------------------------------------

    async def observe(self, rj: Obj) -> M.World:
        md, spec, st = _md(rj), rj.get("spec") or {}, rj.get("status") or {}
        ns = str(md.get("namespace"))
        dep = str(st.get("jobDeploymentStatus") or "")
        cname = str(st.get("rayClusterName") or "")
        cluster = self.store.clusters.get(ns, cname) if cname else None
        head_service = None
        if cluster is not None and dep == M.INITIALIZING and not st.get("dashboardURL"):
            head_service = self.store.services.get(ns, B.head_service_name(cluster))
        submitter = self.store.jobs.get(ns, str(md.get("name")))
        job_head_service = self.store.services.get(ns, B.rayjob_head_service_name(rj))
        head_pod = None
        mode = spec.get("submissionMode") or B.K8S_JOB_MODE
        if mode == B.SIDECAR_MODE and cname:
            heads = self.store.pods.list(ns, {C.LABEL_CLUSTER: cname, C.LABEL_NODE_TYPE: C.NODE_TYPE_HEAD})
            heads = [p for p in heads if not _md(p).get("deletionTimestamp")]
            head_pod = heads[0] if heads else None
        job: M.JobLookup | None = None
        if (
            dep == M.RUNNING
            and st.get("jobId")
            and st.get("dashboardURL")
            and not md.get("deletionTimestamp")
            and cluster is not None
        ):
            job = await self.lookup(str(st["dashboardURL"]), str(st["jobId"]), cluster)
        return M.World(
            now=self.now(),
            cluster=copy.deepcopy(cluster) if cluster is not None else None,
            head_service=head_service,
            submitter=submitter,
            head_pod=head_pod,
            job_head_service=job_head_service,
            job=job,
            suffixes=(self.suffix(), self.suffix()),
        )

    async def lookup(self, dashboard_url: str, job_id: str, cluster: Obj) -> M.JobLookup:
        try:
            dash = await self.dashboards.client(dashboard_url, cluster)
            try:
                return M.JobLookup(info=await dash.get_job(job_id))
            finally:
                await dash.close()
        except JobNotFound:
            return M.JobLookup(not_found=True)
        except (DashboardError, ApiError) as e:
            return M.JobLookup(error=str(e))

    # -- act ------------------------------------------------------------------------------------------------

    async def act(self, rj: Obj, d: M.Decision) -> Obj | None:
        """Run the actions in order; returns the RayJob to write the status on (None: nothing to write)."""
        for a in d.actions:
            if isinstance(a, M.AddFinalizer):
                rj = await self._set_finalizer(rj, add=True)
            elif isinstance(a, M.RemoveFinalizer):
                await self._set_finalizer(rj, add=False)
                return None
            elif isinstance(a, M.CreateCluster):
                await self._create(
                    rj, RAYCLUSTERS, a.cluster, C.EV_CREATED_RAYCLUSTER, C.EV_FAILED_CREATE_RAYCLUSTER
                )
            elif isinstance(a, M.CreateSubmitter):
                await self._create(
                    rj, JOBS, a.job, C.EV_CREATED_RAYJOB_SUBMITTER, C.EV_FAILED_CREATE_RAYJOB_SUBMITTER
                )
            elif isinstance(a, M.CreateService):
                await self._create(rj, SERVICES, a.service, C.EV_CREATED_SERVICE, C.EV_FAILED_CREATE_SERVICE)
            elif isinstance(a, M.UpdateServiceSelector):
                await self._update_service(rj, a)
            elif isinstance(a, M.SubmitJob):
                rejected = await self._submit(rj, a.request)
                if rejected is not None:
                    d.status = M.reject_submission({**rj, "status": d.status}, self.now(), rejected, self.cfg)
                    d.status_changed = True
                    d.requeue_after = self.cfg.requeue_seconds
            elif isinstance(a, M.StopJob):
                await self._stop(rj, a)
            elif isinstance(a, M.DeleteCluster):
                await self._delete(
                    rj, RAYCLUSTERS, a.name, None, C.EV_DELETED_RAYCLUSTER, C.EV_FAILED_DELETE_RAYCLUSTER
                )
            elif isinstance(a, M.DeleteSubmitter):
                await self._delete(
                    rj,
                    JOBS,
                    a.name,
                    "Background",
                    C.EV_DELETED_RAYJOB_SUBMITTER,
                    C.EV_FAILED_DELETE_RAYJOB_SUBMITTER,
                )
            elif isinstance(a, M.SuspendWorkers):
                await self._suspend_workers(rj, a.cluster_name)
            elif isinstance(a, M.DeleteSelf):
                await self.client.delete(
                    RAYJOBS, str(_md(rj)["name"]), str(_md(rj)["namespace"]), ignore_not_found=True
                )
                log.info("%s: deleted the RayJob itself after it finished", _ref(rj))
                return None
            elif isinstance(a, M.Event):
                self._event(
                    rj,
                    a.type,
                    a.reason,
                    ACT_VALIDATE if a.reason.startswith("Invalid") else ACT_RECONCILE,
                    a.message,
                )
        return rj

    def _event(self, rj: Obj, type_: str, reason: str, action: str, message: str) -> None:
        try:
            self.recorder.record(rj, type_, reason, action, message)
        except Exception:  # an event is a courtesy; never fail a reconcile over it
            log.debug("event %s for %s not recorded", reason, _ref(rj), exc_info=True)

    async def _set_finalizer(self, rj: Obj, *, add: bool) -> Obj:
        md = _md(rj)
        fins = [f for f in (md.get("finalizers") or []) if f != C.FINALIZER_RAYJOB]
        if add:
            fins.append(C.FINALIZER_RAYJOB)
        patch = {"metadata": {"finalizers": fins, "resourceVersion": md.get("resourceVersion")}}
        try:
            result: Obj = await self.client.patch(RAYJOBS, str(md["name"]), patch, str(md["namespace"]))
        except ApiError as e:
            if e.not_found and not add:
                return rj
            raise
        return result

    async def _create(self, rj: Obj, res: Resource, obj: Obj, ok_reason: str, fail_reason: str) -> None:
        what = f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
        try:
            await self.client.create(res, obj)
        except ApiError as e:
            if e.already_exists:
                # Created by an earlier reconcile whose status write did not land (or a lagging cache).
                return
            self._event(
                rj, WARNING, fail_reason, ACT_CREATE, f"Failed to create {res.kind} {what}: {e.message}"
            )
            raise
        self._event(rj, NORMAL, ok_reason, ACT_CREATE, f"Created {res.kind} {what}")

    async def _delete(
        self, rj: Obj, res: Resource, name: str, propagation: str | None, ok_reason: str, fail_reason: str
    ) -> None:
        ns = str(_md(rj)["namespace"])
        try:
            gone = await self.client.delete(res, name, ns, propagation=propagation, ignore_not_found=True)
        except ApiError as e:
            self._event(
                rj, WARNING, fail_reason, ACT_DELETE, f"Failed to delete {res.kind} {ns}/{name}: {e.message}"
            )
            raise
        if gone is not None:
            self._event(rj, NORMAL, ok_reason, ACT_DELETE, f"Deleted {res.kind} {ns}/{name}")

    async def _update_service(self, rj: Obj, a: M.UpdateServiceSelector) -> None:
        ns = str(_md(rj)["namespace"])
        try:
            await self.client.patch(SERVICES, a.name, {"spec": a.spec}, ns)
        except ApiError as e:
            self._event(
                rj,
                WARNING,
                C.EV_FAILED_UPDATE_SERVICE,
                ACT_UPDATE,
                f"Failed to update the service {ns}/{a.name}, {e.message}",
            )
            raise
        self._event(rj, NORMAL, C.EV_UPDATED_SERVICE, ACT_UPDATE, f"Updated the service {ns}/{a.name}")

    async def _suspend_workers(self, rj: Obj, cluster_name: str) -> None:
        ns = str(_md(rj)["namespace"])
        rc = await self.client.get_or_none(RAYCLUSTERS, cluster_name, ns)
        if rc is None:
            return
        groups = (rc.get("spec") or {}).get("workerGroupSpecs") or []
        ops: list[Obj] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": _md(rc).get("resourceVersion")}
        ]
        ops += [
            {"op": "add", "path": f"/spec/workerGroupSpecs/{i}/suspend", "value": True}
            for i in range(len(groups))
        ]
        try:
            await self.client.patch(RAYCLUSTERS, cluster_name, ops, ns, patch_type="json")
        except ApiError as e:
            self._event(
                rj,
                WARNING,
                C.EV_FAILED_UPDATE_RAYCLUSTER,
                ACT_UPDATE,
                f"Failed to suspend worker groups in cluster {ns}/{cluster_name}: {e.message}",
            )
            raise
        self._event(
            rj,
            NORMAL,
            C.EV_UPDATED_RAYCLUSTER,
            ACT_UPDATE,
            f"Set the `suspend` field to true for all worker groups in cluster {ns}/{cluster_name}",
        )

    async def _submit(self, rj: Obj, request: Obj) -> str | None:
        """POST the job. Returns a message when the dashboard rejected it for good (4xx), else None."""
        st = rj.get("status") or {}
        cluster = self.store.clusters.get(_md(rj).get("namespace"), st.get("rayClusterName") or "")
        dash = await self.dashboards.client(str(st.get("dashboardURL")), cluster)
        try:
            await dash.submit_job(request)
            self.submissions += 1
            log.info("%s: submitted Ray job %s", _ref(rj), request.get("submission_id"))
        except DuplicateSubmission:
            # Ours from before a restart or a lost status write: the job id is the one persisted in status.
            log.info("%s: Ray job %s was already submitted", _ref(rj), request.get("submission_id"))
        except DashboardUnavailable:
            raise
        except DashboardError as e:
            if e.status is not None and 400 <= e.status < 500 and e.status not in (401, 403, 404, 408, 429):
                return f"The Ray dashboard rejected the job submission: {e}"
            raise
        finally:
            await dash.close()
        return None

    async def _stop(self, rj: Obj, a: M.StopJob) -> None:
        cluster = (
            self.store.clusters.get(_md(rj).get("namespace"), a.cluster_name) if a.cluster_name else None
        )
        try:
            dash = await self.dashboards.client(a.dashboard_url, cluster)
            try:
                stopped = await dash.stop_job(a.job_id)
                log.info(
                    "%s: stop of Ray job %s: %s", _ref(rj), a.job_id, "stopped" if stopped else "already done"
                )
            finally:
                await dash.close()
        except (DashboardError, ApiError) as e:
            # Like KubeRay: the finalizer goes regardless, or a dead cluster would pin the RayJob forever.
            log.warning("%s: could not stop Ray job %s: %s", _ref(rj), a.job_id, e)

    # -- status ------------------------------------------------------------------------------------------------

    async def write_status(self, rj: Obj, status: Obj) -> None:
        md = _md(rj)
        body = {
            "apiVersion": C.API_VERSION,
            "kind": C.KIND_RAYJOB,
            "metadata": {
                "name": md["name"],
                "namespace": md["namespace"],
                "resourceVersion": md.get("resourceVersion"),
            },
            "spec": rj.get("spec") or {},
            "status": status,
        }
        await self.client.replace_status(RAYJOBS, body)


# Wiring ----------------------------------------------------------------------------------------------------


def config_from_env(environ: Mapping[str, str], gates: Mapping[str, bool] | None = None) -> M.RayJobConfig:
    def int_env(name: str, default: int) -> int:
        try:
            return int(environ.get(name, ""))
        except ValueError:
            return default

    g = features.resolve_gates(gates)
    return M.RayJobConfig(
        cluster_domain=environ.get(C.OPENV_CLUSTER_DOMAIN) or C.DEFAULT_CLUSTER_DOMAIN,
        transition_grace_seconds=int_env(C.OPENV_RAYJOB_TRANSITION_GRACE, 300),
        status_check_timeout_seconds=int_env(C.OPENV_RAYJOB_STATUS_CHECK_TIMEOUT, 300),
        delete_rayjob_after_finish=environ.get(C.OPENV_DELETE_RAYJOB_CR_AFTER_JOB_FINISHES, "").lower()
        == "true",
        deletion_policy_gate=g.get(features.RAY_JOB_DELETION_POLICY, True),
        sidecar_submitter_restart=g.get(features.SIDECAR_SUBMITTER_RESTART, False),
        login_shell=environ.get(C.OPENV_ENABLE_LOGIN_SHELL, "").lower() == "true",
        head_cluster_ip_service=environ.get(C.OPENV_ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE, "").lower() == "true",
        gates=g,
    )


def setup(manager: Any, config: Any = None) -> Any:
    """Register the RayJob controller and its caches on a runtime Manager.

    `config` is duck-typed: `environ`, `feature_gates`, `reconcile_concurrency`, `use_kubernetes_proxy`,
    `dashboard_resolver` (callable mapping a dashboard URL to the URL to call), `rayjob_config` (a full
    RayJobConfig, overriding the env), `enable_metrics` are read when present.
    """
    environ = dict(getattr(config, "environ", None) or os.environ)
    cfg = getattr(config, "rayjob_config", None) or config_from_env(
        environ, getattr(config, "feature_gates", None)
    )
    rayjobs = manager.informer(RAYJOBS)
    clusters = manager.informer(RAYCLUSTERS)
    services = manager.informer(SERVICES)
    jobs = manager.informer(JOBS, label_selector=JOB_SELECTOR)
    pods = manager.informer(PODS, label_selector=POD_SELECTOR)
    dashboards = Dashboards(
        manager.client,
        use_proxy=bool(getattr(config, "use_kubernetes_proxy", False)),
        resolve=getattr(config, "dashboard_resolver", None),
    )
    metrics = register_metrics(rayjobs) if getattr(config, "enable_metrics", True) else None
    reconciler = RayJobReconciler(
        manager.client,
        Store(clusters, services, jobs, pods),
        manager.events,
        dashboards,
        cfg,
        metrics=metrics,
    )
    concurrency = int(getattr(config, "reconcile_concurrency", 0) or 4)
    ctrl = manager.new_controller("rayjob", reconciler.reconcile, concurrency=concurrency)
    ctrl.watch_primary(rayjobs, predicate=_always)
    for inf in (clusters, services, jobs):
        ctrl.watch_owned(inf, C.KIND_RAYJOB, owner_group=C.GROUP)
    ctrl.reconciler = reconciler
    return ctrl


def _always(event: str, obj: Obj, old: Obj | None) -> bool:
    # KubeRay's RayJob controller watches RayJobs without a predicate: status edits by users or Kueue count.
    return True


__all__ = [
    "RAYJOBS",
    "Dashboards",
    "RayJobCollector",
    "RayJobReconciler",
    "Store",
    "config_from_env",
    "random_suffix",
    "setup",
]
