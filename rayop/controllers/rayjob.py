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

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS, RAYJOBS
from rayop.base.names import random_suffix
from rayop.base.objects import meta, ref
from rayop.base.resource import Resource
from rayop.base.types import Obj
from rayop.builders import rayjob as B
from rayop.controllers import cached_fields
from rayop.controllers import rayjob_machine as M
from rayop.controllers.common import (
    ACT_RECONCILE,
    ACT_UPDATE,
    ACT_VALIDATE,
    INDEX_CLUSTER,
    JOB_SELECTOR,
    NORMAL,
    POD_SELECTOR,
    WARNING,
    Writer,
    cluster_key,
    split_key,
)
from rayop.controllers.dashboards import Dashboards
from rayop.controllers.rayjob_metrics import RayJobCollector, register_metrics
from rayop.controllers.settings import ControllerSettings
from rayop.ray.dashboard import (
    DashboardError,
    DashboardUnavailable,
    DuplicateSubmission,
    JobNotFound,
)
from rayop.runtime.cache import index_by_label
from rayop.runtime.client import JOBS, PODS, SERVICES, ApiClient, ApiError
from rayop.runtime.protocols import Cache, ControllerHandle, Key, Manager, Recorder, Result

log = logging.getLogger("rayop.controllers.rayjob")

_md = meta
_ref = ref


# The reconciler -------------------------------------------------------------------------------------------


@dataclass
class Store:
    """The caches the reconciler reads (informers in production, fakes in unit tests)."""

    clusters: Cache
    services: Cache
    jobs: Cache
    pods: Cache


class RayJobReconciler:
    def __init__(
        self,
        client: ApiClient,
        store: Store,
        recorder: Recorder,
        dashboards: Dashboards,
        config: M.RayJobConfig,
        *,
        metrics: RayJobCollector | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        suffix: Callable[[], str] = random_suffix,
    ) -> None:
        self.client = client
        self.store = store
        self.w = Writer(client, recorder)
        self.dashboards = dashboards
        self.cfg = config
        self.metrics = metrics
        self.now = now
        self.suffix = suffix
        # Counters of what this reconciler did, for tests and benchmarks.
        self.submissions = 0
        self.reconciles = 0

    async def reconcile(self, key: Key) -> Result:
        ns, name = split_key(key)
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
            heads = [
                p
                for p in self.store.pods.by_index(INDEX_CLUSTER, cluster_key(ns, cname))
                if meta(p).get("labels", {}).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD
                and not meta(p).get("deletionTimestamp")
            ]
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
        self.w.event(rj, type_, reason, action, message)

    async def _set_finalizer(self, rj: Obj, *, add: bool) -> Obj:
        md = _md(rj)
        fins = [f for f in (md.get("finalizers") or []) if f != C.FINALIZER_RAYJOB]
        if add:
            fins.append(C.FINALIZER_RAYJOB)
        try:
            return await self.w.set_finalizers(RAYJOBS, rj, fins)
        except ApiError as e:
            if e.not_found and not add:
                return rj
            raise

    async def _create(self, rj: Obj, res: Resource, obj: Obj, ok_reason: str, fail_reason: str) -> None:
        # An existing object was created by an earlier reconcile whose status write did not land (or
        # the cache lags): not an error.
        await self.w.create(rj, res, obj, what=res.kind, created=ok_reason, failed=fail_reason)

    async def _delete(
        self, rj: Obj, res: Resource, name: str, propagation: str | None, ok_reason: str, fail_reason: str
    ) -> None:
        await self.w.delete(
            rj, res, name, what=res.kind, deleted=ok_reason, failed=fail_reason, propagation=propagation
        )

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
        await self.w.write_status(RAYJOBS, rj, status)


# Wiring ----------------------------------------------------------------------------------------------------


def setup(manager: Manager, settings: ControllerSettings) -> ControllerHandle:
    """Register the RayJob controller, its caches and (when enabled) its metrics on `manager`."""
    own = settings.rayjob
    rayjobs = cached_fields.informer(manager, RAYJOBS)
    clusters = cached_fields.informer(manager, RAYCLUSTERS)
    services = cached_fields.informer(manager, SERVICES)
    jobs = cached_fields.informer(manager, JOBS, label_selector=JOB_SELECTOR)
    pods = cached_fields.informer(manager, PODS, label_selector=POD_SELECTOR)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    dashboards = Dashboards(
        manager.client, use_proxy=own.use_kubernetes_proxy, resolve=own.dashboard_resolver
    )
    metrics = register_metrics(rayjobs) if settings.enable_metrics else None
    reconciler = RayJobReconciler(
        manager.client,
        Store(clusters, services, jobs, pods),
        manager.events,
        dashboards,
        own.machine,
        metrics=metrics,
    )
    ctrl = manager.new_controller("rayjob", reconciler.reconcile, concurrency=settings.reconcile_concurrency)
    ctrl.watch_primary(rayjobs, predicate=_always)
    for inf in (clusters, services, jobs):
        ctrl.watch_owned(inf, C.KIND_RAYJOB, owner_group=C.GROUP)
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
    "random_suffix",
    "setup",
]
