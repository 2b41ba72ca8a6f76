"""The RayCluster reconciler: the entry point, the list of steps, and the status
(KubeRay `rayClusterReconcile` and `calculateStatus`, `ray-operator/controllers/ray/raycluster_controller.go`;
see docs/compatibility.md#raycluster-reconcile).

One reconcile runs, in KubeRay's order:

  managedBy → defaults → validation (validation.py) → GCS FT Redis finalizer / deletion (gcs_ft.py) →
  autoscaler ServiceAccount → Role → RoleBinding → Ingress → auth Secret → head Service → headless worker
  Service → serve Service → GCS PVC (children.py) → Pods (pods.py) → status (here).

Reads come from the shared caches; writes go to the API server. The reconciler never writes the
RayCluster's `.spec`: Ray's autoscaler owns `replicas` and `scaleStrategy.workersToDelete`. Metadata
(finalizers) is changed by a merge patch carrying the resourceVersion; status by PUT /status with the
resourceVersion, and only when it changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from rayop.api import constants as C
from rayop.api.kinds import RAYCLUSTERS
from rayop.base.objects import clone, meta, ref, spec_of
from rayop.base.types import Obj
from rayop.controllers.common import ACT_VALIDATE, WARNING, StatusPacer, Writer, split_key
from rayop.controllers.raycluster.builders import RayClusterBuilders
from rayop.controllers.raycluster.children import ChildObjects
from rayop.controllers.raycluster.gcs_ft import GcsFaultTolerance
from rayop.controllers.raycluster.pods import PodsStep
from rayop.controllers.raycluster.step import (
    DEFAULT_REQUEUE,
    HEAD_SERVICE_EXPECTATION,
    ReconcileError,
    ReconcilePass,
    Step,
    StepServices,
)
from rayop.controllers.raycluster.store import Store
from rayop.controllers.raycluster.validation import Validate, ValidationStep
from rayop.controllers.settings import RayClusterSettings
from rayop.runtime.client import ApiClient, ApiError
from rayop.runtime.expectations import CREATE, Expectations
from rayop.runtime.protocols import Key, Recorder, Result
from rayop.validation import validate_raycluster

log = logging.getLogger("rayop.controllers.raycluster")


def set_defaults(rc: Obj) -> Obj:
    """KubeRay setDefaults on our private copy: nil rayStartParams become {} (never written back)."""
    spec = rc.get("spec")
    if not isinstance(spec, dict):
        return rc
    head = spec.get("headGroupSpec")
    if isinstance(head, dict) and head.get("rayStartParams") is None:
        head["rayStartParams"] = {}
    for g in spec.get("workerGroupSpecs") or []:
        if isinstance(g, dict) and g.get("rayStartParams") is None:
            g["rayStartParams"] = {}
    return rc


class RayClusterReconciler:
    def __init__(
        self,
        client: ApiClient,
        store: Store,
        recorder: Recorder,
        settings: RayClusterSettings,
        *,
        builders: RayClusterBuilders | None = None,
        validate: Validate = validate_raycluster,
        expectations: Expectations | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.services = StepServices(
            client=client,
            store=store,
            writer=Writer(client, recorder),
            builders=builders or RayClusterBuilders(),
            settings=settings,
            expectations=expectations if expectations is not None else Expectations(),  # empty is falsy
            now=now,
        )
        # The same parts under the names the reconciler had before it was split (tests read `exp`).
        self.client = client
        self.store = store
        self.w = self.services.writer
        self.b = self.services.builders
        self.cfg = settings
        self.opts = settings.build_options
        self.exp = self.services.expectations
        self.now = now
        self.validation = ValidationStep(self.services, validate)
        self.gcs_ft = GcsFaultTolerance(self.services)
        self.children = ChildObjects(self.services)
        self.pods = PodsStep(self.services)
        # After validation and the GCS FT finalizer, in KubeRay's order; each name shows in logs and in the
        # event of a step that failed on malformed input.
        self.steps: tuple[tuple[str, Step], ...] = (
            ("reconcile_autoscaler_service_account", self.children.service_account),
            ("reconcile_autoscaler_role", self.children.role),
            ("reconcile_autoscaler_role_binding", self.children.role_binding),
            ("reconcile_ingress", self.children.ingress),
            ("reconcile_auth_secret", self.children.auth_secret),
            ("reconcile_head_service", self.children.head_service),
            ("reconcile_headless_worker_service", self.children.headless_worker_service),
            ("reconcile_serve_service", self.children.serve_service),
            ("reconcile_gcs_pvc", self.children.gcs_pvc),
            ("reconcile_pods", self.pods.reconcile),
        )
        # (namespace, name) -> (resourceVersion our last status write replaced, the object it returned).
        # While the cache still shows the replaced version, the returned object is the newer one: reading
        # it (not the cache) avoids a sure 409, or a wait for the watch event of our own write.
        self._own_status: dict[tuple[str, str], tuple[str, Obj]] = {}
        self._status_pacer = StatusPacer(settings.status_write_interval, settings.status_write_interval_max)

    @property
    def validate(self) -> Validate:
        """The validation rules run by the validation step (tests swap them)."""
        return self.validation.validate

    @validate.setter
    def validate(self, fn: Validate) -> None:
        self.validation.validate = fn

    # -- entry point ------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        namespace, name = split_key(key)
        cached = self.store.cluster(namespace, name)
        if cached is None:
            self.exp.forget((namespace, name))
            self.validation.forget((namespace, name))
            self._own_status.pop((namespace, name), None)
            self._status_pacer.forget(lambda k: k == (namespace, name))
            return Result()
        own = self._own_status.get((namespace, name))
        if own is not None:
            if own[0] == meta(cached).get("resourceVersion"):
                cached = own[1]  # the cache has not shown our last status write yet
            else:
                del self._own_status[(namespace, name)]
        # The cached object is shared and read-only; reconcile_cluster works on its own copy.
        return await self.reconcile_cluster(cached)

    async def reconcile_cluster(self, rc: Obj) -> Result:
        """Reconcile one RayCluster. `rc` is never modified (it is usually the cache's object): every
        write goes to the API server, and the next watch event brings the change back."""
        original = rc
        managed_by = spec_of(rc).get("managedBy")
        if managed_by and managed_by != C.MANAGED_BY_KUBERAY:
            log.debug("skipping %s: managed by %s", ref(rc), managed_by)
            return Result()

        p = ReconcilePass(cluster=set_defaults(clone(rc)), original=original)
        rc = p.cluster

        # A cluster on its way out is not validated: its finalizer must still be handled, or an object that
        # became invalid (say, under stricter rules of a newer operator) would hang in Terminating.
        if not meta(rc).get("deletionTimestamp"):
            refusal = self.validation.check(p)
            if refusal is not None:
                if refusal.status_reason is not None:
                    await self._write_reason(original, refusal.status_reason)
                return refusal.result

        gcs = await self.gcs_ft.finalizer(p)
        if gcs is not None:
            return gcs
        if meta(rc).get("deletionTimestamp"):
            return Result()

        reconcile_err: Exception | None = None
        for step_name, step in self.steps:
            try:
                await step(p)
            except ReconcileError as e:
                reconcile_err = e
            except (ApiError, aiohttp.ClientError, TimeoutError, ConnectionError) as e:
                reconcile_err = e  # transient: requeued; the status shows it
            except Exception as e:
                # A malformed user object that got past the schema (webhook off) must not take down the
                # operator or the other clusters: surface it on this RayCluster and retry later.
                log.warning("%s: %s failed on malformed input: %r", ref(rc), step_name, e, exc_info=True)
                self.w.event(rc, WARNING, C.EV_INVALID_SPEC, ACT_VALIDATE, f"{step_name}: {e!r}")
                reconcile_err = ReconcileError(f"{step_name}: {e!r}")
            if reconcile_err is not None:
                log.info("%s: %s: %s", ref(rc), step_name, reconcile_err)
                break

        if reconcile_err is None and self._cache_behind(p):
            # The cache has not yet shown our own Pod writes, so a status computed now would describe a
            # state we know is gone; the watch events of those Pods bring us back to write the real one.
            # At scale this saves a status write per RayCluster and scale-up step.
            return Result(1.0)
        try:
            status_wait = await self._update_status(p, reconcile_err)
        except ApiError:
            raise
        except Exception as e:
            # The status is derived from the user's templates too (desired CPU, memory...): a value that
            # slipped past the schema must show up on the object, and must not stop other clusters.
            log.warning("%s: status calculation failed: %r", ref(rc), e, exc_info=True)
            self.w.event(rc, WARNING, C.EV_INVALID_SPEC, ACT_VALIDATE, f"calculating the status: {e!r}")
            await self._write_reason(original, f"{C.EV_INVALID_SPEC}: {e!r}")
            return Result(requeue=True)
        if status_wait:
            return Result(status_wait)  # a deferred status change, written by then
        if reconcile_err is not None or status_wait is not None:
            return Result(DEFAULT_REQUEUE)
        if p.more_work:
            # A batch limit cut a large scale-up short, or a group waits for the cache to show our last
            # writes. The watch events of those Pods requeue us; this is only the safety net.
            return Result(1.0)
        return Result(self.cfg.requeue_seconds)

    def _cache_behind(self, p: ReconcilePass) -> bool:
        """Whether the Pod cache still misses some of our own creates (expectations are checked, and so
        pruned, for every group, including groups a suspended or upgrading pass did not look at).

        Pending deletes do not count: a Pod being deleted can stay for its whole grace period (or longer,
        with a finalizer), and the status must keep being written meanwhile, as KubeRay writes it."""
        key = p.key
        groups = [
            C.HEAD_GROUP_NAME,
            *(str(g.get("groupName", "")) for g in spec_of(p.cluster).get("workerGroupSpecs") or []),
        ]
        for g in groups:
            self.exp.satisfied(key, g, self.store.pods)
        # Until the cache shows the head Service we created, a status would lack its name and endpoints
        # and be written again moments later.
        self.exp.satisfied(key, HEAD_SERVICE_EXPECTATION, self.store.services)
        return any(action == CREATE for action, _ in self.exp.pending(key))

    # -- status -------------------------------------------------------------------------------------

    async def _update_status(self, p: ReconcilePass, reconcile_err: Exception | None) -> float | None:
        """Write the status if it changed. Returns None if it did not, 0 if it was written, or the
        seconds until a deferred change is due (see below)."""
        ns, name = p.key
        pods = self.store.cluster_pods(ns, name)
        heads = self.store.head_services(ns, name)
        now = self.now()
        new = self.b.calculate_status(
            p.cluster,
            pods,
            heads[0] if heads else None,
            reconcile_error=reconcile_err,
            now=datetime.fromtimestamp(now, UTC),
            gates=dict(self.cfg.gates),
        )
        old = p.original.get("status") or {}
        if not self.b.status_changed(old, new):
            return None
        # News (state, reason, desired counts, suspension, a failure) is written at once; progress alone
        # (how many workers are ready so far, the head's IP, HeadPodReady) is paced (StatusPacer). The
        # returned wait brings the reconcile back to write it.
        progress = reconcile_err is None and self.b.only_progress_changed(old, new)
        wait = self._status_pacer.wait((ns, name), now, progress)
        if wait:
            return wait
        await self._put_status(p.original, new, progress=progress)
        return 0.0

    async def _write_reason(self, original: Obj, reason: str) -> None:
        status = dict(original.get("status") or {})
        if status.get("reason") == reason:
            return
        status["reason"] = reason
        await self._put_status(original, status)

    async def _put_status(self, original: Obj, status: Obj, *, progress: bool = False) -> None:
        ns, name = meta(original)["namespace"], meta(original)["name"]
        try:
            stored = await self.w.write_status(RAYCLUSTERS, original, status)
        except ApiError as e:
            if e.conflict or e.not_found:
                # Our cached copy is stale; the watch event that made it stale requeues us anyway.
                log.debug("%s: status write skipped: %s", ref(original), e.reason)
                return
            raise
        self._status_pacer.wrote((ns, name), self.now(), progress)
        replaced = meta(original).get("resourceVersion")
        stored_md = stored.get("metadata") if isinstance(stored, dict) else None
        if replaced and isinstance(stored_md, dict) and stored_md.get("resourceVersion"):
            stored_md.pop("managedFields", None)
            self._own_status[(ns, name)] = (str(replaced), stored)
