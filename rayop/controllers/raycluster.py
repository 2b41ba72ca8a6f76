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
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from rayop.api import constants as C
from rayop.api.objects import clone
from rayop.base.times import parse_timestamp
from rayop.controllers import podplan
from rayop.controllers.podplan import GroupPlan, PodToCreate, is_terminating, name_of
from rayop.runtime.client import (
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
    Resource,
)
from rayop.runtime.controller import Result
from rayop.runtime.expectations import CREATE, Expectations

try:  # the networking group constant may be named differently by the runtime's client
    from rayop.runtime.client import INGRESSES
except ImportError:  # pragma: no cover
    INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", kind="Ingress")

Obj = dict[str, Any]
log = logging.getLogger("rayop.controllers.raycluster")

# "This pass stopped short; come back soon", per reconcile call. One reconciler object serves every
# worker, so an attribute would let one cluster's pass clear another's flag. The value is a one-item
# list so steps run as gathered tasks (which copy the context) still set the caller's flag.
_MORE_WORK: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("rayop_raycluster_more_work")


def _flag_more_work() -> None:
    flag = _MORE_WORK.get(None)
    if flag is not None:
        flag[0] = True


RAYCLUSTERS = Resource(C.GROUP, C.VERSION, C.PLURAL_RAYCLUSTERS, kind=C.KIND_RAYCLUSTER)

# Index names on the shared caches: "<namespace>/<cluster>" of the `ray.io/cluster` label.
INDEX_CLUSTER = "raycluster"

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

# Event actions (events.k8s.io), as KubeRay's recorder sets them.
ACT_CREATE = "Create"
ACT_DELETE = "Delete"
ACT_UPDATE = "Update"
ACT_VALIDATE = "Validate"
ACT_CLEANUP = "Cleanup"
ACT_SUSPEND = "Suspend"

NORMAL = "Normal"
WARNING = "Warning"


class ReconcileError(Exception):
    """A step failed. `reason` (if any) becomes the ReplicaFailure condition reason, as KubeRay wraps its
    errors with ErrFailedCreateWorkerPod etc. to drive that condition."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RayClusterConfig:
    """Operator-level knobs of the RayCluster controller (flags, env vars of §9.1, feature gates)."""

    gates: Mapping[str, bool] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    pod_create_concurrency: int = 32
    pod_batch: int = 250
    reconcile_concurrency: int = 4

    def env_true(self, name: str) -> bool:
        return str(self.environ.get(name, "")).lower() == "true"

    def env_not_false(self, name: str) -> bool:
        return str(self.environ.get(name, "")).lower() != "false"

    @property
    def requeue_seconds(self) -> float:
        try:
            return float(int(self.environ.get(C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS, "")))
        except ValueError:
            return float(DEFAULT_REQUEUE_SECONDS)

    def gate(self, name: str, default: bool) -> bool:
        return bool(self.gates.get(name, default))


# --- small helpers on plain dicts ------------------------------------------------------------------


def md(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def spec_of(rc: Mapping[str, Any]) -> Mapping[str, Any]:
    s = rc.get("spec")
    return s if isinstance(s, dict) else {}


def conditions(rc: Mapping[str, Any]) -> list[Obj]:
    st = rc.get("status")
    conds = st.get("conditions") if isinstance(st, dict) else None
    return [c for c in conds or [] if isinstance(c, dict)]


def condition_true(rc: Mapping[str, Any], ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conditions(rc))


def cluster_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def pod_cluster_key(pod: Mapping[str, Any]) -> list[str]:
    """Index function: the RayCluster a Ray Pod (or Service, Job) belongs to, by its `ray.io/cluster` label."""
    labels = md(pod).get("labels") or {}
    cl = labels.get(C.LABEL_CLUSTER) if isinstance(labels, dict) else None
    return [cluster_key(str(md(pod).get("namespace", "")), str(cl))] if cl else []


def owner_ref(rc: Mapping[str, Any]) -> Obj:
    m = md(rc)
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND_RAYCLUSTER,
        "name": m.get("name"),
        "uid": m.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def ensure_owned(obj: Obj, rc: Mapping[str, Any]) -> Obj:
    """Set the controller ownerReference to the RayCluster unless the builder already did; force the namespace."""
    meta = obj.setdefault("metadata", {})
    meta["namespace"] = md(rc).get("namespace")
    refs = meta.get("ownerReferences") or []
    if not any(r.get("controller") for r in refs):
        refs = [*refs, owner_ref(rc)]
    meta["ownerReferences"] = refs
    return obj


def is_controlled_by(obj: Mapping[str, Any], rc: Mapping[str, Any]) -> bool:
    uid = md(rc).get("uid")
    return any(r.get("uid") == uid and r.get("controller") for r in md(obj).get("ownerReferences") or [])


parse_time = parse_timestamp


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
        self, clusters: Any, pods: Any, services: Any, children: Mapping[Resource, Any] | None = None
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
        obj: Obj | None = self.children[res].get(namespace, name)
        return obj

    def cluster(self, namespace: str, name: str) -> Obj | None:
        obj: Obj | None = self.clusters.get(namespace, name)
        return obj

    def cluster_pods(self, namespace: str, name: str) -> list[Obj]:
        return list(self.pods.by_index(INDEX_CLUSTER, cluster_key(namespace, name)))

    def pod(self, namespace: str, name: str) -> Obj | None:
        obj: Obj | None = self.pods.get(namespace, name)
        return obj

    def cluster_services(self, namespace: str, name: str) -> list[Obj]:
        return list(self.services.by_index(INDEX_CLUSTER, cluster_key(namespace, name)))


Builders = Any  # the rayop.builders package namespace (module objects), injected for testability


class RayClusterReconciler:
    def __init__(
        self,
        client: ApiClient,
        store: Store,
        recorder: Any,
        builders: Builders,
        validate: Callable[..., list[Any]],
        opts: Any,
        config: RayClusterConfig,
        *,
        expectations: Expectations | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.recorder = recorder
        self.b = builders
        self.validate = validate
        self.opts = opts
        self.cfg = config
        self.exp = expectations if expectations is not None else Expectations()  # empty is falsy (__len__)
        self.now = now
        # (namespace, name) -> (fingerprint of metadata and spec, errors): most reconciles are caused by
        # pod and status events and see an unchanged spec, so the rules need not run again.
        self._validated: dict[tuple[str, str], tuple[bytes, list[Any]]] = {}
        # (namespace, name) -> resourceVersion our last status write replaced. While the cache still shows
        # that version, a status computed from it would be written with a stale resourceVersion (409).
        self._status_replaced: dict[tuple[str, str], str] = {}

    # -- entry point ------------------------------------------------------------------------------

    async def reconcile(self, key: Any) -> Result:
        namespace, name = _split_key(key)
        cached = self.store.cluster(namespace, name)
        if cached is None:
            self.exp.forget((namespace, name))
            self._validated.pop((namespace, name), None)
            self._status_replaced.pop((namespace, name), None)
            return Result()
        # The cached object is shared and read-only; reconcile_cluster works on its own copy.
        return await self.reconcile_cluster(cached)

    async def reconcile_cluster(self, rc: Obj) -> Result:
        """Reconcile one RayCluster. `rc` is never modified (it is usually the cache's object): every
        write goes to the API server, and the next watch event brings the change back."""
        original = rc
        spec = spec_of(rc)
        managed_by = spec.get("managedBy")
        if managed_by and managed_by != C.MANAGED_BY_KUBERAY:
            log.debug("skipping %s: managed by %s", _ref(rc), managed_by)
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
                log.warning("%s: %s failed on malformed input: %r", _ref(rc), step.__name__, e, exc_info=True)
                await self._event(rc, WARNING, C.EV_INVALID_SPEC, ACT_VALIDATE, f"{step.__name__}: {e!r}")
                reconcile_err = ReconcileError(f"{step.__name__}: {e!r}")
            if reconcile_err is not None:
                log.info("%s: %s: %s", _ref(rc), step.__name__, reconcile_err)
                break

        if reconcile_err is None and self._cache_behind(rc):
            # The cache has not yet shown our own Pod writes, so a status computed now would describe a
            # state we know is gone; the watch events of those Pods bring us back to write the real one.
            # At scale this saves a status write per RayCluster and scale-up step.
            return Result(1.0)
        try:
            changed = await self._update_status(original, rc, reconcile_err)
        except ApiError:
            raise
        except Exception as e:
            # The status is derived from the user's templates too (desired CPU, memory...): a value that
            # slipped past the schema must show up on the object, and must not stop other clusters.
            log.warning("%s: status calculation failed: %r", _ref(rc), e, exc_info=True)
            await self._event(rc, WARNING, C.EV_INVALID_SPEC, ACT_VALIDATE, f"calculating the status: {e!r}")
            await self._write_reason(original, f"{C.EV_INVALID_SPEC}: {e!r}")
            return Result(requeue=True)
        if reconcile_err is not None or changed:
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
            await self._event(rc, WARNING, reason, ACT_VALIDATE, msg)
            await self._write_reason(original, f"{reason}: {text}")
            # No requeue (as KubeRay): the next edit of the object brings it back.
            return Result()
        if condition_true(rc, C.COND_SUSPENDING) and condition_true(rc, C.COND_SUSPENDED):
            msg = (
                f"The RayCluster status is invalid {md(rc).get('namespace')}/{md(rc).get('name')}, "
                "RayClusterSuspending and RayClusterSuspended conditions should not be both true"
            )
            await self._event(rc, WARNING, C.EV_INVALID_STATUS, ACT_VALIDATE, msg)
            return Result(DEFAULT_REQUEUE)
        return None

    def _validation_errors(self, rc: Obj) -> list[Any]:
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
            errors = list(self.validate(rc, gates=dict(self.cfg.gates)))
        except Exception as e:
            # Validation is pure and total by contract; if it still trips on some input, refuse the
            # object visibly rather than reconcile what could not be checked.
            log.warning("%s: validation failed: %r", _ref(rc), e, exc_info=True)
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
        if not self.cfg.env_not_false(C.OPENV_ENABLE_GCS_FT_REDIS_CLEANUP):
            return None
        finalizers = list(md(rc).get("finalizers") or [])
        has = C.FINALIZER_GCS_FT_REDIS_CLEANUP in finalizers
        redis_ft = self.b.cluster.gcs_ft_enabled(rc) and _gcs_backend(rc) != "rocksdb"
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
                log.info("%s: ignoring bad %s=%r", _ref(rc), C.ANN_GCS_FT_DELETION_TIMEOUT, raw)
        deleted_at = parse_time(md(rc).get("deletionTimestamp")) or self.now()
        remaining = deleted_at + timeout - self.now()
        rest = [f for f in finalizers if f != C.FINALIZER_GCS_FT_REDIS_CLEANUP]
        if remaining <= 0:
            await self._patch_finalizers(rc, rest)
            await self._event(
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
        heads = [p for p in pods if _node_type(p) == C.NODE_TYPE_HEAD]
        workers = [p for p in pods if _node_type(p) == C.NODE_TYPE_WORKER]
        for group, selector in ((heads, C.NODE_TYPE_HEAD), (workers, C.NODE_TYPE_WORKER)):
            if any(not is_terminating(p) for p in group):
                await self.client.delete_collection(
                    PODS, ns, label_selector=f"{C.LABEL_CLUSTER}={name},{C.LABEL_NODE_TYPE}={selector}"
                )
        if heads:
            # The GCS on the head may still write to Redis: clean up only once it is gone.
            return Result(min(HEAD_GONE_REQUEUE, remaining))

        jobs = await self.client.list(
            JOBS,
            ns,
            label_selector=f"{C.LABEL_CLUSTER}={name},{C.LABEL_NODE_TYPE}={C.NODE_TYPE_REDIS_CLEANUP}",
        )
        if jobs["items"]:
            done = job_finished(jobs["items"][0])
            if not done:
                return Result(min(DEFAULT_REQUEUE, remaining))
            await self._patch_finalizers(rc, rest)
            log.info("%s: Redis cleanup Job %s, finalizer removed", _ref(rc), done)
            return Result()

        head_pod = self.b.pod.build_head_pod(rc, self.opts)
        job = ensure_owned(self.b.jobs.build_redis_cleanup_job(rc, head_pod), rc)
        try:
            await self.client.create(JOBS, job, ns)
        except ApiError as e:
            if e.already_exists:
                return Result(DEFAULT_REQUEUE)
            await self._event(
                rc,
                WARNING,
                C.EV_FAILED_CREATE_REDIS_CLEANUP_JOB,
                ACT_CREATE,
                f"Failed to create Redis cleanup Job {ns}/{md(job).get('name')}, {e}",
            )
            raise
        await self._event(
            rc,
            NORMAL,
            C.EV_CREATED_REDIS_CLEANUP_JOB,
            ACT_CREATE,
            f"Created Redis cleanup Job {ns}/{md(job).get('name')}",
        )
        return Result(DEFAULT_REQUEUE)

    async def _patch_finalizers(self, rc: Obj, finalizers: list[str]) -> None:
        # A merge patch of metadata only, guarded by the resourceVersion: the spec is never written.
        await self.client.patch(
            RAYCLUSTERS,
            md(rc)["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": md(rc).get("resourceVersion")}},
            md(rc)["namespace"],
            patch_type="merge",
        )

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
            await self._event(rc, WARNING, failed, ACT_CREATE, f"Failed creating {what} {ns}/{nm}, {e}")
            raise
        await self._event(rc, NORMAL, created, ACT_CREATE, f"Created {what} {ns}/{nm}")
        return None

    async def _lookup(self, res: Resource, namespace: str, name: str) -> Obj | None:
        """The object from our cache of that kind when there is one (no API call per reconcile), else GET."""
        if self.store.cached(res):
            return self.store.child(res, namespace, name)
        return await self.client.get_or_none(res, name, namespace)

    def _autoscaling(self, rc: Obj) -> bool:
        return bool(self.b.cluster.is_autoscaling_enabled(rc))

    async def reconcile_autoscaler_service_account(self, rc: Obj) -> None:
        if not self._autoscaling(rc):
            return
        sa = self.b.rbac.build_service_account(rc)
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
            await self._event(rc, WARNING, C.EV_AUTOSCALER_SA_NOT_FOUND, ACT_CREATE, msg)
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
            self.b.rbac.build_role(rc),
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
            self.b.rbac.build_role_binding(rc),
            created=C.EV_CREATED_ROLE_BINDING,
            failed=C.EV_FAILED_CREATE_ROLE_BINDING,
            what="role binding",
        )

    async def reconcile_ingress(self, rc: Obj) -> None:
        head = spec_of(rc).get("headGroupSpec") or {}
        if head.get("enableIngress") is not True:
            return
        ing = ensure_owned(self.b.ingress.build_ingress(rc), rc)
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
            await self._event(
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
            await self._event(
                rc,
                NORMAL,
                C.EV_UPDATED_INGRESS,
                ACT_UPDATE,
                f"Updated ingress {have_md.get('namespace')}/{have_md.get('name')}",
            )

    async def reconcile_auth_secret(self, rc: Obj) -> None:
        if not self.b.secrets.needs_auth_secret(rc):
            return
        # The token is drawn here, not in the builder: builders are pure. It is only used when the Secret
        # does not exist yet, so an existing token is never rotated behind Ray's back.
        secret = self.b.secrets.build_auth_secret(rc, new_auth_token())
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
        svc = self.b.service.build_head_service(rc, self.opts)
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
        svc = self.b.service.build_headless_worker_service(rc)
        await self._ensure_cached_service(rc, svc)

    async def reconcile_serve_service(self, rc: Obj) -> None:
        if (md(rc).get("annotations") or {}).get(C.ANN_ENABLE_SERVE_SERVICE) != "true":
            return
        svc = self.b.service.build_serve_service(rc)
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
        if _gcs_backend(rc) != "rocksdb":
            return
        storage = (spec_of(rc).get("gcsFaultToleranceOptions") or {}).get("storage") or {}
        if storage.get("claimName"):
            return  # bring-your-own claim: the user owns it
        pvc = self.b.storage.build_gcs_pvc(rc)
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
                    await self._event(
                        rc, WARNING, C.EV_FAILED_CREATE_PVC, ACT_CREATE, f"Failed creating PVC, {e}"
                    )
                    raise
                return
            await self._event(rc, NORMAL, C.EV_CREATED_PVC, ACT_CREATE, f"Created PVC {md(pvc)['name']}")
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
        conditions_gate = self.cfg.gate("RayClusterStatusConditions", True)

        suspending = condition_true(rc, C.COND_SUSPENDING)
        if suspending or (not conditions_gate and spec.get("suspend") is True):
            await self._delete_all(
                rc,
                pods,
                f"{C.LABEL_CLUSTER}={name}",
                reason_ok=C.EV_DELETED_POD,
                reason_fail=C.EV_FAILED_DELETE_POD_COLLECTION,
                why="due to suspension",
                action=ACT_SUSPEND,
            )
            return
        if conditions_gate and (condition_true(rc, C.COND_SUSPENDED) or spec.get("suspend") is True):
            # Suspension is atomic: status first moves to Suspending, then the Pods go (§4 step 2).
            return

        heads = [p for p in pods if _node_type(p) == C.NODE_TYPE_HEAD]
        if await self._recreate_upgrade(rc, pods, heads):
            return

        # A missing head is created alongside the workers rather than before them: workers wait for the
        # GCS in their init container anyway, and one round trip less per cluster matters at scale.
        head_create = await self._reconcile_head(rc)
        await _gather_first_error([*([head_create] if head_create else []), self._reconcile_groups(rc)])

    def _group_pods(self, rc: Obj, node_type: str, group: str | None = None) -> list[Obj]:
        return [
            p
            for p in self.store.cluster_pods(md(rc)["namespace"], md(rc)["name"])
            if _node_type(p) == node_type
            and (group is None or (md(p).get("labels") or {}).get(C.LABEL_GROUP) == group)
        ]

    async def _reconcile_groups(self, rc: Obj) -> None:
        ckey = (md(rc)["namespace"], md(rc)["name"])
        spec = spec_of(rc)
        random_delete = self.cfg.env_true(C.OPENV_ENABLE_RANDOM_POD_DELETE)
        autoscaling = self._autoscaling(rc)
        indexing = self.cfg.gate("RayMultiHostIndexing", True)
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
                desired_pods=int(self.b.cluster.desired_worker_replicas(group)),
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
        want = self.b.cluster.upgrade_recreate_hash(spec_of(rc))
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
            f"{C.LABEL_CLUSTER}={name}",
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
            await self._event(
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
        await self._event(rc, NORMAL, reason_ok, action, f"Deleted Pods for RayCluster {ns}/{name} {why}")

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
                await self._event(
                    rc,
                    WARNING,
                    C.EV_FAILED_DELETE_HEAD_POD,
                    ACT_DELETE,
                    f"Failed deleting head Pod {ns}/{name_of(head)}; {reason}, {e}",
                )
                raise ReconcileError(str(e), FAILED_DELETE_HEAD_POD) from e
            self.exp.expect_delete(ckey, C.HEAD_GROUP_NAME, name_of(head))
            await self._event(
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
            pod = ensure_owned(self.b.pod.build_head_pod(rc, self.opts), rc)
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
            meta["name"] = f"{str(meta.pop('generateName'))[:58]}{podplan.random_suffix()}"
        try:
            created: Obj = await self.client.create(PODS, pod, ns)
        except ApiError as e:
            await self._event(
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
        await self._event(
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
                f"{C.LABEL_CLUSTER}={name},{C.LABEL_GROUP}={gname}",
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
                        await self._event(
                            rc,
                            WARNING,
                            C.EV_FAILED_DELETE_WORKER_POD,
                            ACT_DELETE,
                            f"Failed deleting worker Pod {ns}/{pod}; {reason}, {e}",
                        )
                        raise ReconcileError(str(e), FAILED_DELETE_WORKER_POD) from e
                    return
                self.exp.expect_delete(ckey, gname, pod)
                await self._event(
                    rc,
                    NORMAL,
                    C.EV_DELETED_WORKER_POD,
                    ACT_DELETE,
                    f"Deleted worker Pod {ns}/{pod}; {reason}",
                )

        await _gather_first_error([delete_one(p, r) for p, r in plan.delete])
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
            pod = ensure_owned(
                self.b.pod.build_worker_pod(
                    rc,
                    group,
                    self.opts,
                    replica_index=spec.replica_index,
                    replica_name=spec.replica_name,
                    host_index=spec.host_index,
                ),
                rc,
            )
            async with sem:
                created = await self._create_pod(
                    rc, pod, gname, C.EV_FAILED_CREATE_WORKER_POD, FAILED_CREATE_WORKER_POD, "worker Pod"
                )
            created_names.append(name_of(created))

        created_names: list[str] = []
        try:
            await _gather_first_error([create_one(s) for s in todo])
        finally:
            if created_names:
                # One Event per batch, not per Pod as KubeRay does: at scale the per-Pod Events doubled the
                # API writes of a scale-up and slowed the Pod creations they describe. The reason is
                # KubeRay's; the note names every Pod (the recorder truncates past 1 KiB).
                what = "worker Pod" if len(created_names) == 1 else f"{len(created_names)} worker Pods"
                await self._event(
                    rc,
                    NORMAL,
                    C.EV_CREATED_WORKER_POD,
                    ACT_CREATE,
                    f"Created {what} in group {gname}: "
                    + ", ".join(f"{ns}/{n}" for n in sorted(created_names)),
                )

    # -- status -------------------------------------------------------------------------------------

    async def _update_status(self, original: Obj, rc: Obj, reconcile_err: Exception | None) -> bool:
        ns, name = md(rc)["namespace"], md(rc)["name"]
        if self._status_replaced.get((ns, name)) == md(original).get("resourceVersion"):
            # The cache has not shown our last status write yet (status-only changes do not requeue, so
            # say "changed" to come back soon and compare with what the cache shows then).
            return True
        self._status_replaced.pop((ns, name), None)
        pods = self.store.cluster_pods(ns, name)
        heads = self._head_services(rc)
        new = self.b.status.calculate_status(
            rc,
            pods,
            heads[0] if heads else None,
            reconcile_error=reconcile_err,
            now=datetime.fromtimestamp(self.now(), UTC),
            gates=dict(self.cfg.gates),
        )
        old = original.get("status") or {}
        if not self.b.status.status_changed(old, new):
            return False
        await self._put_status(original, new)
        return True

    async def _put_status(self, original: Obj, status: Obj) -> None:
        body = {
            "apiVersion": C.API_VERSION,
            "kind": C.KIND_RAYCLUSTER,
            "metadata": {
                "name": md(original)["name"],
                "namespace": md(original)["namespace"],
                "resourceVersion": md(original).get("resourceVersion"),
            },
            "status": status,
        }
        try:
            await self.client.replace_status(RAYCLUSTERS, body)
            replaced = md(original).get("resourceVersion")
            if replaced:
                self._status_replaced[(md(original)["namespace"], md(original)["name"])] = str(replaced)
        except ApiError as e:
            if e.conflict or e.not_found:
                # Our cached copy is stale; the watch event that made it stale requeues us anyway.
                log.debug("%s: status write skipped: %s", _ref(original), e.reason)
                return
            raise

    # -- events -------------------------------------------------------------------------------------

    async def _event(self, rc: Obj, type_: str, reason: str, action: str, message: str) -> None:
        try:
            res = self.recorder.record(rc, type_, reason, action, message)
            if asyncio.iscoroutine(res):
                await res
        except ApiError as e:  # an event is best effort; never fail a reconcile over it
            log.debug("event %s for %s not recorded: %s", reason, _ref(rc), e)


# --- module helpers --------------------------------------------------------------------------------


async def _gather_first_error(coros: Iterable[Awaitable[None]]) -> None:
    results = await asyncio.gather(*coros, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _split_key(key: Any) -> tuple[str, str]:
    if isinstance(key, tuple):
        return str(key[0]), str(key[1])
    ns, _, name = str(key).partition("/")
    return ns, name


def _ref(obj: Mapping[str, Any]) -> str:
    return f"{md(obj).get('namespace')}/{md(obj).get('name')}"


def _node_type(pod: Mapping[str, Any]) -> str:
    return str((md(pod).get("labels") or {}).get(C.LABEL_NODE_TYPE, ""))


def _gcs_backend(rc: Mapping[str, Any]) -> str:
    opts = spec_of(rc).get("gcsFaultToleranceOptions")
    if isinstance(opts, dict):
        return str(opts.get("backend") or "redis").lower()
    return "redis"


def _should_delete(b: Builders, pod: Obj) -> tuple[bool, str]:
    # The Ray container is the Pod's first container; its status is found by name (statuses are unordered).
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    res = b.cluster.should_delete_pod(pod, str(containers[0].get("name", "")))
    if isinstance(res, tuple):
        return bool(res[0]), str(res[1])
    return bool(res), f"Pod {name_of(pod)} is in a terminal state" if res else ""


# --- wiring ----------------------------------------------------------------------------------------

# KubeRay's manager cache only holds Ray Pods (internal/managercache/cache.go): never every Pod of the cluster.
POD_SELECTOR = f"{C.LABEL_NODE_TYPE} in ({C.NODE_TYPE_HEAD},{C.NODE_TYPE_WORKER},{C.NODE_TYPE_REDIS_CLEANUP})"
JOB_SELECTOR = f"{C.LABEL_CREATED_BY}={C.CREATED_BY_VALUE}"


def load_builders() -> Builders:
    """The builder modules, imported when the operator starts (keeps this module importable alone)."""
    import importlib
    from types import SimpleNamespace

    names = ("cluster", "pod", "service", "rbac", "ingress", "storage", "secrets", "jobs", "status")
    return SimpleNamespace(**{n: importlib.import_module(f"rayop.builders.{n}") for n in names})


def setup(manager: Any, config: Any = None) -> Any:
    """Register the RayCluster controller, its caches and metrics on a runtime Manager.

    `config` is duck-typed (the operator's settings): `environ`, `feature_gates`, `reconcile_concurrency`,
    `pod_create_concurrency`, `pod_batch`, `build_options`, `enable_metrics` are read when present.
    """
    from rayop.api import features
    from rayop.builders.options import BuildOptions
    from rayop.runtime.cache import index_by_label
    from rayop.validation import validate_raycluster

    environ = dict(getattr(config, "environ", None) or os.environ)
    gates = features.resolve_gates(getattr(config, "feature_gates", None))
    cfg = RayClusterConfig(gates=gates, environ=environ)
    for knob in ("pod_create_concurrency", "pod_batch", "reconcile_concurrency"):
        value = getattr(config, knob, None)
        if value:
            setattr(cfg, knob, int(value))
    opts = getattr(config, "build_options", None)
    if opts is None:
        # Config-file-only knobs (KubeRay's Configuration) reach the builders through BuildOptions.
        extra = getattr(config, "extra", None) or {}
        file_knobs = {
            "head_sidecar_containers": extra.get("headSidecarContainers"),
            "worker_sidecar_containers": extra.get("workerSidecarContainers"),
            "default_container_envs": extra.get("defaultContainerEnvs"),
            "default_pod_labels": extra.get("defaultPodLabels"),
            "default_pod_annotations": extra.get("defaultPodAnnotations"),
        }
        opts = BuildOptions.from_env(
            environ, feature_gates=gates, **{k: v for k, v in file_knobs.items() if v}
        )

    clusters = manager.informer(RAYCLUSTERS)
    pods = manager.informer(PODS, label_selector=POD_SELECTOR)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    services = manager.informer(SERVICES)
    services.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    jobs = manager.informer(JOBS, label_selector=JOB_SELECTOR)
    # Every other kind we create carries ray.io/cluster: caching just those spares the API server a GET
    # per kind on every reconcile (KubeRay reads them from its cache too).
    children = {
        res: manager.informer(res, label_selector=C.LABEL_CLUSTER)
        for res in (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, INGRESSES, SECRETS, PVCS)
    }

    reconciler = RayClusterReconciler(
        manager.client,
        Store(clusters, pods, services, children),
        manager.events,
        load_builders(),
        validate_raycluster,
        opts,
        cfg,
    )
    concurrency = int(getattr(config, "reconcile_concurrency", 0) or cfg.reconcile_concurrency)
    ctrl = manager.new_controller("raycluster", reconciler.reconcile, concurrency=concurrency)
    ctrl.watch_primary(clusters)
    for inf in (pods, services, jobs, *children.values()):
        ctrl.watch_owned(inf, C.KIND_RAYCLUSTER, owner_group=C.GROUP)
    if getattr(config, "enable_metrics", True):
        from rayop.controllers import raycluster_metrics

        raycluster_metrics.register(clusters)
    ctrl.reconciler = reconciler
    return ctrl
