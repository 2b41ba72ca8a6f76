"""The RayCluster reconciler (kuberay-behaviour.md §2-§4).

One reconcile is an ordered list of steps, then status, in KubeRay's order (§2.3):

  managedBy → defaults → validation → GCS FT Redis finalizer / deletion → autoscaler ServiceAccount →
  Role → RoleBinding → Ingress → auth Secret → head Service → headless worker Service → serve Service →
  GCS PVC → Pods → status.

Reads come from the shared caches (informers); writes go to the API server. The reconciler never writes the
RayCluster's `.spec`: Ray's autoscaler owns `replicas` and `scaleStrategy.workersToDelete`. Metadata
(finalizers) is changed by a merge patch carrying the resourceVersion; status by PUT /status with the
resourceVersion, and only when it changed.

Scale: the Pods of one group are created concurrently under a semaphore, at most `pod_batch` per
reconcile, so a 1,000-Pod scale-up hands the worker back after each batch and other RayClusters get
their turn (KubeRay creates Pods one by one, issues #3909, #2646).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import copy
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson

from rayop.api import constants as C
from rayop.api import features
from rayop.api import spec as RS
from rayop.api.kinds import RAYCLUSTERS
from rayop.base.names import random_suffix
from rayop.base.objects import (
    annotations_of,
    clone,
    condition_true,
    is_controlled_by,
    is_terminating,
    meta,
    name_of,
    ref,
    set_controller,
    spec_of,
)
from rayop.base.resource import Resource
from rayop.base.times import parse_timestamp
from rayop.base.types import Obj
from rayop.builders import cluster as cluster_builders
from rayop.builders import ingress as ingress_builders
from rayop.builders import jobs as job_builders
from rayop.builders import pod as pod_builders
from rayop.builders import rbac as rbac_builders
from rayop.builders import secrets as secret_builders
from rayop.builders import service as service_builders
from rayop.builders import status as status_builders
from rayop.builders import storage as storage_builders
from rayop.builders.options import BuildOptions
from rayop.controllers import cached_fields, podplan
from rayop.controllers.common import (
    ACT_CLEANUP,
    ACT_CREATE,
    ACT_DELETE,
    ACT_SUSPEND,
    ACT_UPDATE,
    ACT_VALIDATE,
    INDEX_CLUSTER,
    JOB_SELECTOR,
    NORMAL,
    POD_SELECTOR,
    WARNING,
    Writer,
    cluster_key,
    cluster_selector,
    gather_first_error,
    node_type,
    split_key,
)
from rayop.controllers.podplan import GroupPlan, PodToCreate
from rayop.controllers.settings import ControllerSettings, RayClusterSettings
from rayop.runtime.cache import index_by_label
from rayop.runtime.client import (
    INGRESSES,
    JOBS,
    PODS,
    PVCS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    ApiClient,
    ApiError,
)
from rayop.runtime.expectations import CREATE, Expectations
from rayop.runtime.protocols import Cache, ControllerHandle, Key, Manager, Recorder, Result
from rayop.validation import FieldError, validate_raycluster

log = logging.getLogger("rayop.controllers.raycluster")

# "This pass stopped short; come back soon", per reconcile call. One reconciler object serves every
# worker, so an attribute would let one cluster's pass clear another's flag. The value is a one-item
# list so steps run as gathered tasks (which copy the context) still set the caller's flag.
_MORE_WORK: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("rayop_raycluster_more_work")


def _flag_more_work() -> None:
    flag = _MORE_WORK.get(None)
    if flag is not None:
        flag[0] = True


# The Expectations group of the head Service a reconcile created ("/" cannot occur in a worker group name).
HEAD_SERVICE_EXPECTATION = "services/head"
DEFAULT_REQUEUE = 2.0  # KubeRay DefaultRequeueDuration
DEFAULT_REQUEUE_SECONDS = 300
HEAD_GONE_REQUEUE = 10.0  # head Pod termination takes longer than 2 s (KubeRay comment)
GCS_FT_DELETION_TIMEOUT = 300

# ReplicaFailure condition reasons (KubeRay utils.RayClusterReplicaFailureReason).
FAILED_CREATE_HEAD_POD = "FailedCreateHeadPod"
FAILED_DELETE_HEAD_POD = "FailedDeleteHeadPod"
FAILED_CREATE_WORKER_POD = "FailedCreateWorkerPod"
FAILED_DELETE_WORKER_POD = "FailedDeleteWorkerPod"
FAILED_DELETE_ALL_PODS = "FailedDeleteAllPods"


class ReconcileError(Exception):
    """A step failed. `reason` (if any) becomes the ReplicaFailure condition reason, as KubeRay wraps its
    errors with ErrFailedCreateWorkerPod etc. to drive that condition."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


# --- small helpers on plain dicts ------------------------------------------------------------------


md = meta


def ensure_owned(obj: Obj, rc: Mapping[str, Any]) -> Obj:
    """Put a child in its RayCluster's namespace under the RayCluster's controller reference."""
    return set_controller(obj, rc, api_version=C.API_VERSION, kind=C.KIND_RAYCLUSTER)


def job_finished(job: Mapping[str, Any]) -> str:
    """ "Complete" or "Failed" when a batch Job finished (KubeRay utils.IsJobFinished), else ""."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


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


def new_auth_token() -> str:
    # 32 random bytes, base64 (KubeRay's generated auth token); the randomness lives here, not in builders.
    return base64.b64encode(secrets.token_bytes(32)).decode()


class Store:
    """What the reconciler reads from the caches. Backed by the runtime's informers in production and by
    in-memory fakes in unit tests."""

    def __init__(
        self,
        clusters: Cache,
        pods: Cache,
        services: Cache,
        children: Mapping[Resource, Cache] | None = None,
    ) -> None:
        self.clusters = clusters
        self.pods = pods
        self.services = services
        # Caches of the other kinds we create (labelled ray.io/cluster); a kind without one is read from
        # the API server instead.
        self.children = dict(children or {})

    def cached(self, res: Resource) -> bool:
        return res in self.children

    def child(self, res: Resource, namespace: str, name: str) -> Obj | None:
        return self.children[res].get(namespace, name)

    def cluster(self, namespace: str, name: str) -> Obj | None:
        return self.clusters.get(namespace, name)

    def cluster_pods(self, namespace: str, name: str) -> list[Obj]:
        return list(self.pods.by_index(INDEX_CLUSTER, cluster_key(namespace, name)))

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.pods.get(namespace, name)

    def cluster_services(self, namespace: str, name: str) -> list[Obj]:
        return list(self.services.by_index(INDEX_CLUSTER, cluster_key(namespace, name)))


class WorkerPodBuilder(Protocol):
    def __call__(
        self,
        cluster: Mapping[str, Any],
        group: Mapping[str, Any],
        opts: BuildOptions,
        *,
        replica_index: int | None = None,
        replica_name: str | None = None,
        host_index: int | None = None,
    ) -> Obj: ...


class StatusCalculator(Protocol):
    def __call__(
        self,
        cluster: Mapping[str, Any],
        pods: Sequence[Mapping[str, Any]],
        head_service: Mapping[str, Any] | None,
        *,
        reconcile_error: BaseException | str | None,
        now: datetime | str,
        gates: Mapping[str, bool] | None = None,
    ) -> Obj: ...


@dataclass(frozen=True)
class RayClusterBuilders:
    """The pure builders the reconciler calls; the defaults are rayop.builders'. Unit tests replace
    single ones (`dataclasses.replace`) to isolate the reconciler from what the builders produce."""

    head_pod: Callable[[Mapping[str, Any], BuildOptions], Obj] = pod_builders.build_head_pod
    worker_pod: WorkerPodBuilder = pod_builders.build_worker_pod
    head_service: Callable[[Mapping[str, Any], BuildOptions], Obj] = service_builders.build_head_service
    headless_worker_service: Callable[[Mapping[str, Any]], Obj] = (
        service_builders.build_headless_worker_service
    )
    serve_service: Callable[[Mapping[str, Any]], Obj | None] = service_builders.build_serve_service
    service_account: Callable[[Mapping[str, Any]], Obj] = rbac_builders.build_service_account
    role: Callable[[Mapping[str, Any]], Obj] = rbac_builders.build_role
    role_binding: Callable[[Mapping[str, Any]], Obj] = rbac_builders.build_role_binding
    ingress: Callable[[Mapping[str, Any]], Obj] = ingress_builders.build_ingress
    gcs_pvc: Callable[[Mapping[str, Any]], Obj | None] = storage_builders.build_gcs_pvc
    needs_auth_secret: Callable[[Mapping[str, Any]], bool] = secret_builders.needs_auth_secret
    auth_secret: Callable[[Mapping[str, Any], str], Obj] = secret_builders.build_auth_secret
    redis_cleanup_job: Callable[[Mapping[str, Any], Mapping[str, Any]], Obj] = (
        job_builders.build_redis_cleanup_job
    )
    calculate_status: StatusCalculator = status_builders.calculate_status
    status_changed: Callable[[Mapping[str, Any] | None, Mapping[str, Any] | None], bool] = (
        status_builders.status_changed
    )
    only_progress_changed: Callable[[Mapping[str, Any] | None, Mapping[str, Any] | None], bool] = (
        status_builders.only_progress_changed
    )
    desired_worker_replicas: Callable[[Mapping[str, Any]], int] = cluster_builders.desired_worker_replicas
    upgrade_recreate_hash: Callable[[Mapping[str, Any]], str] = cluster_builders.upgrade_recreate_hash
    should_delete_pod: Callable[[Mapping[str, Any], str], tuple[bool, str]] = (
        cluster_builders.should_delete_pod
    )


class Validate(Protocol):
    def __call__(
        self, obj: Any, *, gates: Mapping[str, bool] | None = None, old: Any = None
    ) -> list[FieldError]: ...


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
        self.client = client
        self.store = store
        self.w = Writer(client, recorder)
        self.b = builders or RayClusterBuilders()
        self.validate = validate
        self.opts = settings.build_options
        self.cfg = settings
        self.exp = expectations if expectations is not None else Expectations()  # empty is falsy (__len__)
        self.now = now
        # (namespace, name) -> (fingerprint of metadata and spec, errors): most reconciles are caused by
        # pod and status events and see an unchanged spec, so the rules need not run again.
        self._validated: dict[tuple[str, str], tuple[bytes, list[FieldError | str]]] = {}
        # (namespace, name) -> (resourceVersion our last status write replaced, the object it returned).
        # While the cache still shows the replaced version, the returned object is the newer one: reading
        # it (not the cache) avoids a sure 409, or a wait for the watch event of our own write.
        self._own_status: dict[tuple[str, str], tuple[str, Obj]] = {}
        # (namespace, name) -> (when we last wrote that cluster's status (self.now() clock), how many
        # progress-only writes in a row that was).
        self._status_written_at: dict[tuple[str, str], tuple[float, int]] = {}

    # -- entry point ------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        namespace, name = split_key(key)
        cached = self.store.cluster(namespace, name)
        if cached is None:
            self.exp.forget((namespace, name))
            self._validated.pop((namespace, name), None)
            self._own_status.pop((namespace, name), None)
            self._status_written_at.pop((namespace, name), None)
            return Result()
        own = self._own_status.get((namespace, name))
        if own is not None:
            if own[0] == md(cached).get("resourceVersion"):
                cached = own[1]  # the cache has not shown our last status write yet
            else:
                del self._own_status[(namespace, name)]
        # The cached object is shared and read-only; reconcile_cluster works on its own copy.
        return await self.reconcile_cluster(cached)

    async def reconcile_cluster(self, rc: Obj) -> Result:
        """Reconcile one RayCluster. `rc` is never modified (it is usually the cache's object): every
        write goes to the API server, and the next watch event brings the change back."""
        original = rc
        spec = spec_of(rc)
        managed_by = spec.get("managedBy")
        if managed_by and managed_by != C.MANAGED_BY_KUBERAY:
            log.debug("skipping %s: managed by %s", ref(rc), managed_by)
            return Result()

        rc = set_defaults(clone(rc))

        # A cluster on its way out is not validated: its finalizer must still be handled, or an object that
        # became invalid (say, under stricter rules of a newer operator) would hang in Terminating.
        if not md(rc).get("deletionTimestamp"):
            invalid = await self._validate(rc, original)
            if invalid is not None:
                return invalid

        gcs = await self._gcs_ft_finalizer(rc)
        if gcs is not None:
            return gcs
        if md(rc).get("deletionTimestamp"):
            return Result()

        steps: list[Callable[[Obj], Awaitable[None]]] = [
            self.reconcile_autoscaler_service_account,
            self.reconcile_autoscaler_role,
            self.reconcile_autoscaler_role_binding,
            self.reconcile_ingress,
            self.reconcile_auth_secret,
            self.reconcile_head_service,
            self.reconcile_headless_worker_service,
            self.reconcile_serve_service,
            self.reconcile_gcs_pvc,
            self.reconcile_pods,
        ]
        _MORE_WORK.set([False])
        reconcile_err: Exception | None = None
        for step in steps:
            try:
                await step(rc)
            except ReconcileError as e:
                reconcile_err = e
            except (ApiError, aiohttp.ClientError, TimeoutError, ConnectionError) as e:
                reconcile_err = e  # transient: requeued; the status shows it
            except Exception as e:
                # A malformed user object that got past the schema (webhook off) must not take down the
                # operator or the other clusters: surface it on this RayCluster and retry later.
                log.warning("%s: %s failed on malformed input: %r", ref(rc), step.__name__, e, exc_info=True)
                self.w.event(rc, WARNING, C.EV_INVALID_SPEC, ACT_VALIDATE, f"{step.__name__}: {e!r}")
                reconcile_err = ReconcileError(f"{step.__name__}: {e!r}")
            if reconcile_err is not None:
                log.info("%s: %s: %s", ref(rc), step.__name__, reconcile_err)
                break

        if reconcile_err is None and self._cache_behind(rc):
            # The cache has not yet shown our own Pod writes, so a status computed now would describe a
            # state we know is gone; the watch events of those Pods bring us back to write the real one.
            # At scale this saves a status write per RayCluster and scale-up step.
            return Result(1.0)
        try:
            status_wait = await self._update_status(original, rc, reconcile_err)
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
        if _MORE_WORK.get([False])[0]:
            # A batch limit cut a large scale-up short, or a group waits for the cache to show our last
            # writes. The watch events of those Pods requeue us; this is only the safety net.
            return Result(1.0)
        return Result(self.cfg.requeue_seconds)

    def _cache_behind(self, rc: Obj) -> bool:
        """Whether the Pod cache still misses some of our own creates (expectations are checked, and so
        pruned, for every group, including groups a suspended or upgrading pass did not look at).

        Pending deletes do not count: a Pod being deleted can stay for its whole grace period (or longer,
        with a finalizer), and the status must keep being written meanwhile, as KubeRay writes it."""
        key = (md(rc)["namespace"], md(rc)["name"])
        groups = [
            C.HEAD_GROUP_NAME,
            *(str(g.get("groupName", "")) for g in spec_of(rc).get("workerGroupSpecs") or []),
        ]
        for g in groups:
            self.exp.satisfied(key, g, self.store.pods)
        # Until the cache shows the head Service we created, a status would lack its name and endpoints
        # and be written again moments later.
        self.exp.satisfied(key, HEAD_SERVICE_EXPECTATION, self.store.services)
        return any(action == CREATE for action, _ in self.exp.pending(key))

    # -- validation ---------------------------------------------------------------------------------

    async def _validate(self, rc: Obj, original: Obj) -> Result | None:
        errors = self._validation_errors(rc)
        if errors:
            meta_errs = [e for e in errors if str(getattr(e, "path", "") or e).startswith("metadata")]
            reason = (
                C.EV_INVALID_METADATA if meta_errs and len(meta_errs) == len(errors) else C.EV_INVALID_SPEC
            )
            what = "metadata" if reason == C.EV_INVALID_METADATA else "spec"
            text = "; ".join(str(e) for e in errors)
            msg = f"The RayCluster {what} is invalid {md(rc).get('namespace')}/{md(rc).get('name')}: {text}"
            log.info("%s", msg)
            self.w.event(rc, WARNING, reason, ACT_VALIDATE, msg)
            await self._write_reason(original, f"{reason}: {text}")
            # No requeue (as KubeRay): the next edit of the object brings it back.
            return Result()
        if condition_true(rc, C.COND_SUSPENDING) and condition_true(rc, C.COND_SUSPENDED):
            msg = (
                f"The RayCluster status is invalid {md(rc).get('namespace')}/{md(rc).get('name')}, "
                "RayClusterSuspending and RayClusterSuspended conditions should not be both true"
            )
            self.w.event(rc, WARNING, C.EV_INVALID_STATUS, ACT_VALIDATE, msg)
            return Result(DEFAULT_REQUEUE)
        return None

    def _validation_errors(self, rc: Obj) -> list[FieldError | str]:
        meta = md(rc)
        key = (str(meta.get("namespace")), str(meta.get("name")))
        try:
            stable = {k: v for k, v in meta.items() if k != "resourceVersion"}
            fingerprint = orjson.dumps([stable, spec_of(rc)])
        except TypeError:
            fingerprint = b""  # not JSON (never from the API server): validate every time
        hit = self._validated.get(key)
        if fingerprint and hit is not None and hit[0] == fingerprint:
            return hit[1]
        try:
            errors: list[FieldError | str] = list(self.validate(rc, gates=dict(self.cfg.gates)))
        except Exception as e:
            # Validation is pure and total by contract; if it still trips on some input, refuse the
            # object visibly rather than reconcile what could not be checked.
            log.warning("%s: validation failed: %r", ref(rc), e, exc_info=True)
            errors = [f"spec: Invalid value: {e!r}"]
        if fingerprint:
            self._validated[key] = (fingerprint, errors)
        return errors

    async def _write_reason(self, original: Obj, reason: str) -> None:
        status = dict(original.get("status") or {})
        if status.get("reason") == reason:
            return
        status["reason"] = reason
        await self._put_status(original, status)

    # -- GCS fault tolerance (Redis) ------------------------------------------------------------------

    async def _gcs_ft_finalizer(self, rc: Obj) -> Result | None:
        if not self.cfg.gcs_ft_redis_cleanup:
            return None
        finalizers = list(md(rc).get("finalizers") or [])
        has = C.FINALIZER_GCS_FT_REDIS_CLEANUP in finalizers
        redis_ft = RS.gcs_ft_backend(spec_of(rc), annotations_of(rc)) == C.GCS_BACKEND_REDIS
        deleting = bool(md(rc).get("deletionTimestamp"))
        if not deleting:
            if redis_ft and not has:
                await self._patch_finalizers(rc, [*finalizers, C.FINALIZER_GCS_FT_REDIS_CLEANUP])
                # Only start reconciling after the finalizer is in place (KubeRay).
                return Result(DEFAULT_REQUEUE)
            return None
        if not has:
            return Result()
        if not redis_ft:
            # A stale finalizer (e.g. the cluster moved to RocksDB) must not block deletion forever.
            await self._patch_finalizers(rc, [f for f in finalizers if f != C.FINALIZER_GCS_FT_REDIS_CLEANUP])
            return Result()
        return await self._redis_cleanup(rc, finalizers)

    async def _redis_cleanup(self, rc: Obj, finalizers: list[str]) -> Result:
        ns, name = md(rc)["namespace"], md(rc)["name"]
        timeout = float(GCS_FT_DELETION_TIMEOUT)
        raw = (md(rc).get("annotations") or {}).get(C.ANN_GCS_FT_DELETION_TIMEOUT)
        if raw:
            try:
                timeout = float(int(raw))
            except ValueError:
                log.info("%s: ignoring bad %s=%r", ref(rc), C.ANN_GCS_FT_DELETION_TIMEOUT, raw)
        deleted_at = parse_timestamp(md(rc).get("deletionTimestamp")) or self.now()
        remaining = deleted_at + timeout - self.now()
        rest = [f for f in finalizers if f != C.FINALIZER_GCS_FT_REDIS_CLEANUP]
        if remaining <= 0:
            await self._patch_finalizers(rc, rest)
            self.w.event(
                rc,
                WARNING,
                C.EV_FORCE_DELETED_STUCK_CLUSTER,
                ACT_CLEANUP,
                f"Force-removed the finalizer {C.FINALIZER_GCS_FT_REDIS_CLEANUP} of RayCluster {ns}/{name} "
                f"after {int(timeout)} s: the Redis cleanup did not finish. The storage namespace in Redis may "
                "need a manual cleanup.",
            )
            return Result()

        pods = self.store.cluster_pods(ns, name)
        heads = [p for p in pods if node_type(p) == C.NODE_TYPE_HEAD]
        workers = [p for p in pods if node_type(p) == C.NODE_TYPE_WORKER]
        for group, selector in ((heads, C.NODE_TYPE_HEAD), (workers, C.NODE_TYPE_WORKER)):
            if any(not is_terminating(p) for p in group):
                await self.client.delete_collection(
                    PODS, ns, label_selector=cluster_selector(name, node_type=selector)
                )
        if heads:
            # The GCS on the head may still write to Redis: clean up only once it is gone.
            return Result(min(HEAD_GONE_REQUEUE, remaining))

        jobs = await self.client.list(
            JOBS,
            ns,
            label_selector=cluster_selector(name, node_type=C.NODE_TYPE_REDIS_CLEANUP),
        )
        if jobs["items"]:
            done = job_finished(jobs["items"][0])
            if not done:
                return Result(min(DEFAULT_REQUEUE, remaining))
            await self._patch_finalizers(rc, rest)
            log.info("%s: Redis cleanup Job %s, finalizer removed", ref(rc), done)
            return Result()

        head_pod = self.b.head_pod(rc, self.opts)
        job = ensure_owned(self.b.redis_cleanup_job(rc, head_pod), rc)
        try:
            await self.client.create(JOBS, job, ns)
        except ApiError as e:
            if e.already_exists:
                return Result(DEFAULT_REQUEUE)
            self.w.event(
                rc,
                WARNING,
                C.EV_FAILED_CREATE_REDIS_CLEANUP_JOB,
                ACT_CREATE,
                f"Failed to create Redis cleanup Job {ns}/{md(job).get('name')}, {e}",
            )
            raise
        self.w.event(
            rc,
            NORMAL,
            C.EV_CREATED_REDIS_CLEANUP_JOB,
            ACT_CREATE,
            f"Created Redis cleanup Job {ns}/{md(job).get('name')}",
        )
        return Result(DEFAULT_REQUEUE)

    async def _patch_finalizers(self, rc: Obj, finalizers: list[str]) -> None:
        await self.w.set_finalizers(RAYCLUSTERS, rc, finalizers)

    # -- child resources that are created once ----------------------------------------------------

    async def _ensure(
        self,
        rc: Obj,
        res: Resource,
        obj: Obj,
        *,
        created: str,
        failed: str,
        what: str,
        existing: Obj | bool | None = None,
    ) -> Obj | None:
        """Create `obj` unless it exists (given, or looked up by name). Returns the existing object."""
        ensure_owned(obj, rc)
        ns, nm = md(obj)["namespace"], md(obj)["name"]
        if existing is None:
            existing = await self._lookup(res, ns, nm)
        if existing:
            return existing if isinstance(existing, dict) else None
        try:
            await self.client.create(res, obj, ns)
        except ApiError as e:
            if e.already_exists:
                # Not in our cache (made by someone else, without our label, or the cache lags): read it.
                return await self.client.get_or_none(res, nm, ns) if self.store.cached(res) else None
            self.w.event(rc, WARNING, failed, ACT_CREATE, f"Failed creating {what} {ns}/{nm}, {e}")
            raise
        self.w.event(rc, NORMAL, created, ACT_CREATE, f"Created {what} {ns}/{nm}")
        return None

    async def _lookup(self, res: Resource, namespace: str, name: str) -> Obj | None:
        """The object from our cache of that kind when there is one (no API call per reconcile), else GET."""
        if self.store.cached(res):
            return self.store.child(res, namespace, name)
        return await self.client.get_or_none(res, name, namespace)

    def _autoscaling(self, rc: Obj) -> bool:
        return bool(RS.autoscaling_enabled(spec_of(rc)))

    async def reconcile_autoscaler_service_account(self, rc: Obj) -> None:
        if not self._autoscaling(rc):
            return
        sa = self.b.service_account(rc)
        ns, nm = md(rc)["namespace"], md(sa)["name"]
        if await self._lookup(SERVICEACCOUNTS, ns, nm) is not None:
            return
        template_sa = (
            ((spec_of(rc).get("headGroupSpec") or {}).get("template") or {})
            .get("spec", {})
            .get("serviceAccountName")
        )
        user_named = bool(template_sa) and template_sa == nm
        # The user's own ServiceAccount does not carry our label, so our cache cannot show it.
        if (
            user_named
            and self.store.cached(SERVICEACCOUNTS)
            and await self.client.get_or_none(SERVICEACCOUNTS, nm, ns) is not None
        ):
            return
        if user_named:
            # A user-named ServiceAccount is the user's to create (KubeRay PR #1128): say so and stop.
            msg = (
                f"Failed to reconcile RayCluster {ns}/{md(rc)['name']}. If users specify ServiceAccountName for the "
                f"head Pod, they need to create a ServiceAccount themselves. However, ServiceAccount {nm} is not "
                "found. Please create one."
            )
            self.w.event(rc, WARNING, C.EV_AUTOSCALER_SA_NOT_FOUND, ACT_CREATE, msg)
            raise ReconcileError(msg)
        await self._ensure(
            rc,
            SERVICEACCOUNTS,
            sa,
            created=C.EV_CREATED_SERVICE_ACCOUNT,
            failed=C.EV_FAILED_CREATE_SERVICE_ACCOUNT,
            what="service account",
            existing=False,
        )

    async def reconcile_autoscaler_role(self, rc: Obj) -> None:
        if not self._autoscaling(rc):
            return
        await self._ensure(
            rc,
            ROLES,
            self.b.role(rc),
            created=C.EV_CREATED_ROLE,
            failed=C.EV_FAILED_CREATE_ROLE,
            what="role",
        )

    async def reconcile_autoscaler_role_binding(self, rc: Obj) -> None:
        if not self._autoscaling(rc):
            return
        await self._ensure(
            rc,
            ROLEBINDINGS,
            self.b.role_binding(rc),
            created=C.EV_CREATED_ROLE_BINDING,
            failed=C.EV_FAILED_CREATE_ROLE_BINDING,
            what="role binding",
        )

    async def reconcile_ingress(self, rc: Obj) -> None:
        head = spec_of(rc).get("headGroupSpec") or {}
        if head.get("enableIngress") is not True:
            return
        ing = ensure_owned(self.b.ingress(rc), rc)
        existing = await self._ensure(
            rc,
            INGRESSES,
            ing,
            created=C.EV_CREATED_INGRESS,
            failed=C.EV_FAILED_CREATE_INGRESS,
            what="ingress",
        )
        if existing is None:
            return
        if not is_controlled_by(existing, rc):
            self.w.event(
                rc,
                WARNING,
                C.EV_FAILED_CREATE_INGRESS,
                ACT_CREATE,
                f"Ingress {md(existing).get('namespace')}/{md(existing).get('name')} exists and is not owned by "
                "this RayCluster; leaving it untouched",
            )
            return
        # Keep labels, annotations and spec in line with the RayCluster (KubeRay updates the Ingress in place).
        want_md, have_md = md(ing), md(existing)
        if (
            existing.get("spec") != ing.get("spec")
            or (have_md.get("labels") or {}) != (want_md.get("labels") or {})
            or (have_md.get("annotations") or {}) != (want_md.get("annotations") or {})
        ):
            upd = copy.deepcopy(existing)
            upd["spec"] = ing.get("spec")
            upd["metadata"]["labels"] = want_md.get("labels") or {}
            upd["metadata"]["annotations"] = want_md.get("annotations") or {}
            await self.client.replace(INGRESSES, upd)
            self.w.event(
                rc,
                NORMAL,
                C.EV_UPDATED_INGRESS,
                ACT_UPDATE,
                f"Updated ingress {have_md.get('namespace')}/{have_md.get('name')}",
            )

    async def reconcile_auth_secret(self, rc: Obj) -> None:
        if not self.b.needs_auth_secret(rc):
            return
        # The token is drawn here, not in the builder: builders are pure. It is only used when the Secret
        # does not exist yet, so an existing token is never rotated behind Ray's back.
        secret = self.b.auth_secret(rc, new_auth_token())
        await self._ensure(
            rc,
            SECRETS,
            secret,
            created=C.EV_CREATED_SECRET,
            failed=C.EV_FAILED_CREATE_SECRET,
            what="secret",
        )

    def _head_services(self, rc: Obj) -> list[Obj]:
        return [
            s
            for s in self.store.cluster_services(md(rc)["namespace"], md(rc)["name"])
            if ((md(s).get("labels") or {}).get(C.LABEL_NODE_TYPE) == C.NODE_TYPE_HEAD)
        ]

    async def reconcile_head_service(self, rc: Obj) -> None:
        found = self._head_services(rc)
        if len(found) == 1:
            return
        if len(found) > 1:
            raise ReconcileError(f"{len(found)} head services found {[name_of(s) for s in found]}")
        svc = self.b.head_service(rc, self.opts)
        if not (svc.get("spec") or {}).get("ports"):
            raise ReconcileError("ray head service does not have any ports set up")
        await self._ensure(
            rc,
            SERVICES,
            svc,
            created=C.EV_CREATED_SERVICE,
            failed=C.EV_FAILED_CREATE_SERVICE,
            what="service",
            existing=False,
        )
        ckey = (md(rc)["namespace"], md(rc)["name"])
        # A lagging cache makes later passes try again (409); that must not restart the expectation's clock.
        if not self.exp.pending(ckey, HEAD_SERVICE_EXPECTATION):
            self.exp.expect_create(ckey, HEAD_SERVICE_EXPECTATION, name_of(svc))

    async def reconcile_headless_worker_service(self, rc: Obj) -> None:
        if not any(int(g.get("numOfHosts") or 1) > 1 for g in spec_of(rc).get("workerGroupSpecs") or []):
            return
        svc = self.b.headless_worker_service(rc)
        await self._ensure_cached_service(rc, svc)

    async def reconcile_serve_service(self, rc: Obj) -> None:
        if (md(rc).get("annotations") or {}).get(C.ANN_ENABLE_SERVE_SERVICE) != "true":
            return
        svc = self.b.serve_service(rc)
        if svc is None:
            raise ReconcileError("the serve service needs a port named serve on the head Ray container")
        await self._ensure_cached_service(rc, svc)

    async def _ensure_cached_service(self, rc: Obj, svc: Obj) -> None:
        names = {name_of(s) for s in self.store.cluster_services(md(rc)["namespace"], md(rc)["name"])}
        await self._ensure(
            rc,
            SERVICES,
            svc,
            created=C.EV_CREATED_SERVICE,
            failed=C.EV_FAILED_CREATE_SERVICE,
            what="service",
            existing=True if name_of(svc) in names else None,
        )

    async def reconcile_gcs_pvc(self, rc: Obj) -> None:
        if RS.gcs_ft_backend(spec_of(rc), annotations_of(rc)) != C.GCS_BACKEND_ROCKSDB:
            return
        storage = (spec_of(rc).get("gcsFaultToleranceOptions") or {}).get("storage") or {}
        if storage.get("claimName"):
            return  # bring-your-own claim: the user owns it
        pvc = self.b.gcs_pvc(rc)
        if pvc is None:
            return
        if storage.get("deletionPolicy") == "Retain":
            # A retained PVC must outlive the RayCluster: no ownerReference, so no garbage collection.
            pvc.setdefault("metadata", {})["namespace"] = md(rc)["namespace"]
            if await self._lookup(PVCS, md(rc)["namespace"], md(pvc)["name"]) is not None:
                return
            try:
                await self.client.create(PVCS, pvc, md(rc)["namespace"])
            except ApiError as e:
                if not e.already_exists:
                    self.w.event(rc, WARNING, C.EV_FAILED_CREATE_PVC, ACT_CREATE, f"Failed creating PVC, {e}")
                    raise
                return
            self.w.event(rc, NORMAL, C.EV_CREATED_PVC, ACT_CREATE, f"Created PVC {md(pvc)['name']}")
            return
        await self._ensure(
            rc,
            PVCS,
            pvc,
            created=C.EV_CREATED_PVC,
            failed=C.EV_FAILED_CREATE_PVC,
            what="persistent volume claim",
        )

    # -- Pods (§4) ------------------------------------------------------------------------------------

    async def reconcile_pods(self, rc: Obj) -> None:
        ns, name = md(rc)["namespace"], md(rc)["name"]
        spec = spec_of(rc)
        pods = self.store.cluster_pods(ns, name)
        conditions_gate = self.cfg.gate(features.RAY_CLUSTER_STATUS_CONDITIONS, True)

        suspending = condition_true(rc, C.COND_SUSPENDING)
        if suspending or (not conditions_gate and spec.get("suspend") is True):
            await self._delete_all(
                rc,
                pods,
                cluster_selector(name),
                reason_ok=C.EV_DELETED_POD,
                reason_fail=C.EV_FAILED_DELETE_POD_COLLECTION,
                why="due to suspension",
                action=ACT_SUSPEND,
            )
            return
        if conditions_gate and (condition_true(rc, C.COND_SUSPENDED) or spec.get("suspend") is True):
            # Suspension is atomic: status first moves to Suspending, then the Pods go (§4 step 2).
            return

        heads = [p for p in pods if node_type(p) == C.NODE_TYPE_HEAD]
        if await self._recreate_upgrade(rc, pods, heads):
            return

        # A missing head is created alongside the workers rather than before them: workers wait for the
        # GCS in their init container anyway, and one round trip less per cluster matters at scale.
        head_create = await self._reconcile_head(rc)
        await gather_first_error([*([head_create] if head_create else []), self._reconcile_groups(rc)])

    def _group_pods(self, rc: Obj, kind: str, group: str | None = None) -> list[Obj]:
        return [
            p
            for p in self.store.cluster_pods(md(rc)["namespace"], md(rc)["name"])
            if node_type(p) == kind
            and (group is None or (md(p).get("labels") or {}).get(C.LABEL_GROUP) == group)
        ]

    async def _reconcile_groups(self, rc: Obj) -> None:
        ckey = (md(rc)["namespace"], md(rc)["name"])
        spec = spec_of(rc)
        random_delete = self.cfg.random_pod_delete
        autoscaling = self._autoscaling(rc)
        indexing = self.cfg.gate(features.RAY_MULTI_HOST_INDEXING, True)
        for group in spec.get("workerGroupSpecs") or []:
            gname = str(group.get("groupName", ""))
            if not self.exp.satisfied(ckey, gname, self.store.pods):
                log.debug("%s: group %s waits for the cache to catch up", ckey, gname)
                _flag_more_work()
                continue
            # Read the Pods right after the expectations check, with no await in between: the check
            # vouches for the cache as it is now, not for a list taken before an earlier await (the
            # informer may have moved on meanwhile, and a stale list would undercount).
            group_pods = self._group_pods(rc, C.NODE_TYPE_WORKER, gname)
            plan = podplan.plan_worker_group(
                group,
                group_pods,
                desired_pods=int(self.b.desired_worker_replicas(group)),
                autoscaling=autoscaling,
                random_delete=random_delete,
                multi_host_indexing=indexing,
                should_delete=lambda p: _should_delete(self.b, p),
            )
            await self._execute(rc, group, group_pods, plan)

    async def _recreate_upgrade(self, rc: Obj, pods: list[Obj], heads: list[Obj]) -> bool:
        strategy = (spec_of(rc).get("upgradeStrategy") or {}).get("type")
        if strategy != "Recreate" or not heads:
            return False
        head = heads[0]
        ann = md(head).get("annotations") or {}
        want = self.b.upgrade_recreate_hash(spec_of(rc))
        have = ann.get(C.ANN_UPGRADE_RECREATE_HASH)
        if have == want:
            return False
        if ann.get(C.ANN_KUBERAY_VERSION) != C.KUBERAY_VERSION:
            # A new operator version changes the hash without the user changing anything: re-stamp the
            # head instead of restarting the whole cluster (KubeRay v1.6 rule).
            await self.client.patch(
                PODS,
                name_of(head),
                {
                    "metadata": {
                        "annotations": {
                            C.ANN_UPGRADE_RECREATE_HASH: want,
                            C.ANN_KUBERAY_VERSION: C.KUBERAY_VERSION,
                        }
                    }
                },
                md(rc)["namespace"],
            )
            return False
        name = md(rc)["name"]
        await self._delete_all(
            rc,
            pods,
            cluster_selector(name),
            reason_ok=C.EV_DELETED_POD,
            reason_fail=C.EV_FAILED_DELETE_POD_COLLECTION,
            why="for the Recreate upgrade strategy",
            action=ACT_DELETE,
        )
        self.exp.forget((md(rc)["namespace"], name))
        return True

    async def _delete_all(
        self,
        rc: Obj,
        pods: list[Obj],
        selector: str,
        *,
        reason_ok: str,
        reason_fail: str,
        why: str,
        action: str,
    ) -> None:
        if not any(not is_terminating(p) for p in pods):
            return
        ns, name = md(rc)["namespace"], md(rc)["name"]
        try:
            await self.client.delete_collection(PODS, ns, label_selector=selector)
        except ApiError as e:
            self.w.event(
                rc,
                WARNING,
                reason_fail,
                action,
                f"Failed deleting Pods {why} for RayCluster {ns}/{name}, {e}",
            )
            raise ReconcileError(str(e), FAILED_DELETE_ALL_PODS) from e
        # Everything matching is gone at the server, including Pods the cache has not shown yet, so
        # pending expectations for them are moot; keeping them would stall the next scale-up for 30 s.
        group = next(
            (t.split("=", 1)[1] for t in selector.split(",") if t.startswith(f"{C.LABEL_GROUP}=")), None
        )
        self.exp.forget((ns, name), group)
        self.w.event(rc, NORMAL, reason_ok, action, f"Deleted Pods for RayCluster {ns}/{name} {why}")

    async def _reconcile_head(self, rc: Obj) -> Awaitable[None] | None:
        """Deletes what must go (raising to stop this pass); returns the creation of a missing head, for
        the caller to run alongside the workers."""
        ns, name = md(rc)["namespace"], md(rc)["name"]
        ckey = (ns, name)
        if not self.exp.satisfied(ckey, C.HEAD_GROUP_NAME, self.store.pods):
            _flag_more_work()
            return None
        heads = self._group_pods(rc, C.NODE_TYPE_HEAD)  # read right after the check, see _reconcile_groups
        if len(heads) == 1:
            head = heads[0]
            dele, reason = _should_delete(self.b, head)
            if not dele:
                return None
            try:
                await self.client.delete(PODS, name_of(head), ns, ignore_not_found=True)
            except ApiError as e:
                self.w.event(
                    rc,
                    WARNING,
                    C.EV_FAILED_DELETE_HEAD_POD,
                    ACT_DELETE,
                    f"Failed deleting head Pod {ns}/{name_of(head)}; {reason}, {e}",
                )
                raise ReconcileError(str(e), FAILED_DELETE_HEAD_POD) from e
            self.exp.expect_delete(ckey, C.HEAD_GROUP_NAME, name_of(head))
            self.w.event(
                rc,
                NORMAL,
                C.EV_DELETED_HEAD_POD,
                ACT_DELETE,
                f"Deleted head Pod {ns}/{name_of(head)}; {reason}",
            )
            raise ReconcileError(reason)
        if not heads:
            ann = md(rc).get("annotations") or {}
            if (
                condition_true(rc, C.COND_PROVISIONED)
                and ann.get(C.ANN_DISABLE_PROVISIONED_HEAD_RESTART) == "true"
            ):
                return None
            pod = ensure_owned(self.b.head_pod(rc, self.opts), rc)
            return self._create_head(rc, pod)
        # More than one head: keep the healthy ones out of harm's way, delete the rest (KubeRay).
        extras = [p for p in heads if (p.get("status") or {}).get("phase") not in ("Running", "Pending")]
        for p in extras:
            if is_terminating(p):
                continue
            try:
                await self.client.delete(PODS, name_of(p), ns, ignore_not_found=True)
            except ApiError as e:
                raise ReconcileError(str(e), FAILED_DELETE_HEAD_POD) from e
            self.exp.expect_delete(ckey, C.HEAD_GROUP_NAME, name_of(p))
        if len(heads) - len(extras) > 1:
            raise ReconcileError(f"{len(heads) - len(extras)} head Pods found for RayCluster {ckey}")
        return None

    async def _create_pod(
        self, rc: Obj, pod: Obj, group: str, fail_event: str, fail_reason: str, what: str
    ) -> Obj:
        """POST one Pod and record the expectation. The name is drawn here, the way the API server would
        draw it for generateName (same alphabet, same length): if the request times out, the Pod may exist
        anyway, and knowing its name lets the group wait for it instead of creating a second one."""
        ns = md(rc)["namespace"]
        ckey = (ns, md(rc)["name"])
        meta = pod.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{str(meta.pop('generateName'))[:58]}{random_suffix()}"
        try:
            created: Obj = await self.client.create(PODS, pod, ns)
        except ApiError as e:
            self.w.event(
                rc, WARNING, fail_event, ACT_CREATE, f"Failed to create {what} {ns}/{name_of(pod)}, {e}"
            )
            raise ReconcileError(str(e), fail_reason) from e
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            # Unknown outcome: expect the Pod; the cache shows it, or the 30 s expectation timeout ends the wait.
            self.exp.expect_create(ckey, group, name_of(pod))
            raise ReconcileError(f"creating {what} {ns}/{name_of(pod)}: {e!r}", fail_reason) from e
        self.exp.expect_create(ckey, group, name_of(created), uid=md(created).get("uid"))
        return created

    async def _create_head(self, rc: Obj, pod: Obj) -> None:
        ns = md(rc)["namespace"]
        created = await self._create_pod(
            rc, pod, C.HEAD_GROUP_NAME, C.EV_FAILED_CREATE_HEAD_POD, FAILED_CREATE_HEAD_POD, "head Pod"
        )
        self.w.event(
            rc, NORMAL, C.EV_CREATED_HEAD_POD, ACT_CREATE, f"Created head Pod {ns}/{name_of(created)}"
        )

    async def _execute(
        self, rc: Obj, group: Mapping[str, Any], group_pods: list[Obj], plan: GroupPlan
    ) -> None:
        ns, name = md(rc)["namespace"], md(rc)["name"]
        ckey = (ns, name)
        gname = str(group.get("groupName", ""))
        if plan.delete_all:
            await self._delete_all(
                rc,
                group_pods,
                cluster_selector(name, group=gname),
                reason_ok=C.EV_DELETED_WORKER_POD,
                reason_fail=C.EV_FAILED_DELETE_WORKER_POD_COLLECTION,
                why=f"of suspended worker group {gname}",
                action=ACT_SUSPEND,
            )
            return
        if plan.note:
            log.debug("%s group %s: %s", ckey, gname, plan.note)

        sem = asyncio.Semaphore(max(1, self.cfg.pod_create_concurrency))

        async def delete_one(pod: str, reason: str) -> None:
            async with sem:
                try:
                    await self.client.delete(PODS, pod, ns)
                except ApiError as e:
                    if not e.not_found:
                        self.w.event(
                            rc,
                            WARNING,
                            C.EV_FAILED_DELETE_WORKER_POD,
                            ACT_DELETE,
                            f"Failed deleting worker Pod {ns}/{pod}; {reason}, {e}",
                        )
                        raise ReconcileError(str(e), FAILED_DELETE_WORKER_POD) from e
                    return
                self.exp.expect_delete(ckey, gname, pod)
                self.w.event(
                    rc,
                    NORMAL,
                    C.EV_DELETED_WORKER_POD,
                    ACT_DELETE,
                    f"Deleted worker Pod {ns}/{pod}; {reason}",
                )

        await gather_first_error([delete_one(p, r) for p, r in plan.delete])
        if plan.stop:
            raise ReconcileError(plan.stop)

        todo = plan.create
        if len(todo) > self.cfg.pod_batch:
            # Whole multi-host replicas only: never split one replica across two batches.
            cut = self.cfg.pod_batch
            while (
                cut < len(todo)
                and todo[cut].replica_name is not None
                and todo[cut].replica_name == todo[cut - 1].replica_name
            ):
                cut += 1
            todo = todo[:cut]
            _flag_more_work()

        async def create_one(spec: PodToCreate) -> None:
            async with sem:
                # Built only once it may be sent: a 250-Pod batch of whole Pod dicts would otherwise sit
                # in memory while the semaphore lets 32 through.
                pod = ensure_owned(
                    self.b.worker_pod(
                        rc,
                        group,
                        self.opts,
                        replica_index=spec.replica_index,
                        replica_name=spec.replica_name,
                        host_index=spec.host_index,
                    ),
                    rc,
                )
                created = await self._create_pod(
                    rc, pod, gname, C.EV_FAILED_CREATE_WORKER_POD, FAILED_CREATE_WORKER_POD, "worker Pod"
                )
            created_names.append(name_of(created))

        created_names: list[str] = []
        try:
            await gather_first_error([create_one(s) for s in todo])
        finally:
            if created_names:
                # One Event per batch, not per Pod as KubeRay does: at scale the per-Pod Events doubled the
                # API writes of a scale-up and slowed the Pod creations they describe. The reason is
                # KubeRay's; the note names every Pod (the recorder truncates past 1 KiB).
                what = "worker Pod" if len(created_names) == 1 else f"{len(created_names)} worker Pods"
                self.w.event(
                    rc,
                    NORMAL,
                    C.EV_CREATED_WORKER_POD,
                    ACT_CREATE,
                    f"Created {what} in group {gname}: "
                    + ", ".join(f"{ns}/{n}" for n in sorted(created_names)),
                )

    # -- status -------------------------------------------------------------------------------------

    async def _update_status(self, original: Obj, rc: Obj, reconcile_err: Exception | None) -> float | None:
        """Write the status if it changed. Returns None if it did not, 0 if it was written, or the
        seconds until a deferred change is due (see below)."""
        ns, name = md(rc)["namespace"], md(rc)["name"]
        pods = self.store.cluster_pods(ns, name)
        heads = self._head_services(rc)
        now = self.now()
        new = self.b.calculate_status(
            rc,
            pods,
            heads[0] if heads else None,
            reconcile_error=reconcile_err,
            now=datetime.fromtimestamp(now, UTC),
            gates=dict(self.cfg.gates),
        )
        old = original.get("status") or {}
        if not self.b.status_changed(old, new):
            return None
        # News (state, reason, desired counts, suspension, a failure) is written at once. Progress alone
        # (how many workers are ready so far, the head's IP, HeadPodReady) waits until an interval has
        # passed since this cluster's last status write: status_write_interval, doubled for each
        # progress-only write in a row, up to status_write_interval_max. Pods turning ready one after
        # another then make a few writes, not one each, however long they take. The returned wait
        # brings the reconcile back to write it.
        last, streak = self._status_written_at.get((ns, name), (float("-inf"), 0))
        progress = reconcile_err is None and self.b.only_progress_changed(old, new)
        if progress:
            interval = min(self.cfg.status_write_interval * 2.0**streak, self.cfg.status_write_interval_max)
            if now - last < interval:
                return max(0.05, interval - (now - last))
        await self._put_status(original, new, progress=progress)
        return 0.0

    async def _put_status(self, original: Obj, status: Obj, *, progress: bool = False) -> None:
        ns, name = md(original)["namespace"], md(original)["name"]
        try:
            stored = await self.w.write_status(RAYCLUSTERS, original, status)
        except ApiError as e:
            if e.conflict or e.not_found:
                # Our cached copy is stale; the watch event that made it stale requeues us anyway.
                log.debug("%s: status write skipped: %s", ref(original), e.reason)
                return
            raise
        streak = self._status_written_at.get((ns, name), (0.0, 0))[1] + 1 if progress else 0
        self._status_written_at[(ns, name)] = (self.now(), min(streak, 16))
        replaced = md(original).get("resourceVersion")
        stored_md = stored.get("metadata") if isinstance(stored, dict) else None
        if replaced and isinstance(stored_md, dict) and stored_md.get("resourceVersion"):
            stored_md.pop("managedFields", None)
            self._own_status[(ns, name)] = (str(replaced), stored)


def _should_delete(b: RayClusterBuilders, pod: Obj) -> tuple[bool, str]:
    # The Ray container is the Pod's first container; its status is found by name (statuses are unordered).
    containers = spec_of(pod).get("containers") or [{}]
    return b.should_delete_pod(pod, str(containers[0].get("name", "")))


# --- wiring ----------------------------------------------------------------------------------------


def setup(manager: Manager, settings: ControllerSettings) -> ControllerHandle:
    """Register the RayCluster controller, its caches and (when enabled) its metrics on `manager`."""
    # Informers keep what cached_fields lists for their kind.
    clusters = cached_fields.informer(manager, RAYCLUSTERS)
    pods = cached_fields.informer(manager, PODS, label_selector=POD_SELECTOR)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    services = cached_fields.informer(manager, SERVICES)
    services.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    jobs = cached_fields.informer(manager, JOBS, label_selector=JOB_SELECTOR)
    # Every other kind we create carries ray.io/cluster: caching just those spares the API server a GET
    # per kind on every reconcile (KubeRay reads them from its cache too).
    children = {
        res: cached_fields.informer(manager, res, label_selector=C.LABEL_CLUSTER)
        for res in (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, INGRESSES, SECRETS, PVCS)
    }
    reconciler = RayClusterReconciler(
        manager.client, Store(clusters, pods, services, children), manager.events, settings.raycluster
    )
    ctrl = manager.new_controller(
        "raycluster", reconciler.reconcile, concurrency=settings.reconcile_concurrency
    )
    ctrl.watch_primary(clusters)
    for inf in (pods, services, jobs, *children.values()):
        ctrl.watch_owned(inf, C.KIND_RAYCLUSTER, owner_group=C.GROUP)
    if settings.enable_metrics:
        from rayop.controllers import raycluster_metrics

        raycluster_metrics.register(clusters)
    return ctrl
