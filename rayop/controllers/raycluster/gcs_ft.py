"""The GCS fault tolerance step: the Redis cleanup finalizer and what runs when a Redis-backed cluster is
deleted (KubeRay `ray-operator/controllers/ray/raycluster_controller.go`, the `GCSFaultToleranceRedisCleanup`
part of `rayClusterReconcile`; the Job is built by `rayop.builders.redis_cleanup`).

While a cluster with a Redis GCS backend lives, it carries `ray.io/gcs-ft-redis-cleanup-finalizer`; the
other steps only start once it is in place. When it is deleted: delete its Pods, wait for the head to be
gone (its GCS could still write), run the Redis cleanup Job, and drop the finalizer once the Job finished
(Complete or Failed), or after `ray.io/gcs-ft-deletion-timeout` seconds (default 300) with a Warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rayop.api import constants as C
from rayop.api import spec as RS
from rayop.api.kinds import RAYCLUSTERS
from rayop.base.objects import annotations_of, is_terminating, meta, ref, spec_of
from rayop.base.times import parse_timestamp
from rayop.base.types import Obj
from rayop.controllers.common import (
    ACT_CLEANUP,
    ACT_CREATE,
    NORMAL,
    WARNING,
    cluster_selector,
    node_type,
)
from rayop.controllers.raycluster.step import (
    DEFAULT_REQUEUE,
    GCS_FT_DELETION_TIMEOUT,
    HEAD_GONE_REQUEUE,
    ReconcilePass,
    StepServices,
    ensure_owned,
)
from rayop.runtime.client import JOBS, PODS, ApiError
from rayop.runtime.protocols import Result

log = logging.getLogger("rayop.controllers.raycluster")


def job_finished(job: Mapping[str, Any]) -> str:
    """ "Complete" or "Failed" when a batch Job finished (KubeRay utils.IsJobFinished), else ""."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


class GcsFaultTolerance:
    def __init__(self, services: StepServices) -> None:
        self.s = services

    async def finalizer(self, p: ReconcilePass) -> Result | None:
        """None to go on with the other steps; a Result to end this reconcile with."""
        if not self.s.settings.gcs_ft_redis_cleanup:
            return None
        rc = p.cluster
        finalizers = list(meta(rc).get("finalizers") or [])
        has = C.FINALIZER_GCS_FT_REDIS_CLEANUP in finalizers
        redis_ft = RS.gcs_ft_backend(spec_of(rc), annotations_of(rc)) == C.GCS_BACKEND_REDIS
        deleting = bool(meta(rc).get("deletionTimestamp"))
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
        s = self.s
        ns, name = meta(rc)["namespace"], meta(rc)["name"]
        timeout = float(GCS_FT_DELETION_TIMEOUT)
        raw = (meta(rc).get("annotations") or {}).get(C.ANN_GCS_FT_DELETION_TIMEOUT)
        if raw:
            try:
                timeout = float(int(raw))
            except ValueError:
                log.info("%s: ignoring bad %s=%r", ref(rc), C.ANN_GCS_FT_DELETION_TIMEOUT, raw)
        deleted_at = parse_timestamp(meta(rc).get("deletionTimestamp")) or s.now()
        remaining = deleted_at + timeout - s.now()
        rest = [f for f in finalizers if f != C.FINALIZER_GCS_FT_REDIS_CLEANUP]
        if remaining <= 0:
            await self._patch_finalizers(rc, rest)
            s.writer.event(
                rc,
                WARNING,
                C.EV_FORCE_DELETED_STUCK_CLUSTER,
                ACT_CLEANUP,
                f"Force-removed the finalizer {C.FINALIZER_GCS_FT_REDIS_CLEANUP} of RayCluster {ns}/{name} "
                f"after {int(timeout)} s: the Redis cleanup did not finish. The storage namespace in Redis may "
                "need a manual cleanup.",
            )
            return Result()

        pods = s.store.cluster_pods(ns, name)
        heads = [p for p in pods if node_type(p) == C.NODE_TYPE_HEAD]
        workers = [p for p in pods if node_type(p) == C.NODE_TYPE_WORKER]
        for group, selector in ((heads, C.NODE_TYPE_HEAD), (workers, C.NODE_TYPE_WORKER)):
            if any(not is_terminating(p) for p in group):
                await s.client.delete_collection(
                    PODS, ns, label_selector=cluster_selector(name, node_type=selector)
                )
        if heads:
            # The GCS on the head may still write to Redis: clean up only once it is gone.
            return Result(min(HEAD_GONE_REQUEUE, remaining))

        jobs = await s.client.list(
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

        head_pod = s.builders.head_pod(rc, s.opts)
        job = ensure_owned(s.builders.redis_cleanup_job(rc, head_pod), rc)
        try:
            await s.client.create(JOBS, job, ns)
        except ApiError as e:
            if e.already_exists:
                return Result(DEFAULT_REQUEUE)
            s.writer.event(
                rc,
                WARNING,
                C.EV_FAILED_CREATE_REDIS_CLEANUP_JOB,
                ACT_CREATE,
                f"Failed to create Redis cleanup Job {ns}/{meta(job).get('name')}, {e}",
            )
            raise
        s.writer.event(
            rc,
            NORMAL,
            C.EV_CREATED_REDIS_CLEANUP_JOB,
            ACT_CREATE,
            f"Created Redis cleanup Job {ns}/{meta(job).get('name')}",
        )
        return Result(DEFAULT_REQUEUE)

    async def _patch_finalizers(self, rc: Obj, finalizers: list[str]) -> None:
        await self.s.writer.set_finalizers(RAYCLUSTERS, rc, finalizers)
