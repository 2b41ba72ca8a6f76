"""The Pods step of a RayCluster reconcile (KubeRay `reconcilePods` and `reconcileMultiHostWorkerGroup`,
`ray-operator/controllers/ray/raycluster_controller.go`; see docs/compatibility.md#pods).

In order: suspension (delete every Pod, atomically through the Suspending condition); the Recreate
upgrade strategy (delete every Pod when the head's hash is stale); the head (delete one that will not run
Ray again, create a missing one); then each worker group, planned by the pure `podplan.plan_worker_group`
and carried out here. Every create and delete is recorded in the Expectations, and a group whose
expectations the cache has not met yet is skipped, so a lagging cache never doubles a Pod.

Scale: the Pods of one group are created concurrently under a semaphore, at most `pod_batch` per
reconcile, so a 1,000-Pod scale-up hands the worker back after each batch and other RayClusters get their
turn (KubeRay creates Pods one by one; ray-project/kuberay issues 3909 and 2646).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import aiohttp

from rayop.api import constants as C
from rayop.api import features
from rayop.base.names import random_suffix
from rayop.base.objects import condition_true, is_terminating, meta, name_of, spec_of
from rayop.base.types import Obj
from rayop.controllers import podplan
from rayop.controllers.common import (
    ACT_CREATE,
    ACT_DELETE,
    ACT_SUSPEND,
    NORMAL,
    WARNING,
    cluster_selector,
    gather_first_error,
    node_type,
)
from rayop.controllers.podplan import GroupPlan, PodToCreate
from rayop.controllers.raycluster.builders import RayClusterBuilders
from rayop.controllers.raycluster.step import (
    FAILED_CREATE_HEAD_POD,
    FAILED_CREATE_WORKER_POD,
    FAILED_DELETE_ALL_PODS,
    FAILED_DELETE_HEAD_POD,
    FAILED_DELETE_WORKER_POD,
    ReconcileError,
    ReconcilePass,
    StepServices,
    autoscaling,
    ensure_owned,
)
from rayop.runtime.client import PODS, ApiError

log = logging.getLogger("rayop.controllers.raycluster")


def should_delete(b: RayClusterBuilders, pod: Obj) -> tuple[bool, str]:
    # The Ray container is the Pod's first container; its status is found by name (statuses are unordered).
    containers = spec_of(pod).get("containers") or [{}]
    return b.should_delete_pod(pod, str(containers[0].get("name", "")))


class PodsStep:
    def __init__(self, services: StepServices) -> None:
        self.s = services

    async def reconcile(self, p: ReconcilePass) -> None:
        rc, s = p.cluster, self.s
        spec = spec_of(rc)
        pods = s.store.cluster_pods(p.namespace, p.name)
        conditions_gate = s.settings.gate(features.RAY_CLUSTER_STATUS_CONDITIONS, True)

        suspending = condition_true(rc, C.COND_SUSPENDING)
        if suspending or (not conditions_gate and spec.get("suspend") is True):
            await self._delete_all(
                p,
                pods,
                cluster_selector(p.name),
                reason_ok=C.EV_DELETED_POD,
                reason_fail=C.EV_FAILED_DELETE_POD_COLLECTION,
                why="due to suspension",
                action=ACT_SUSPEND,
            )
            return
        if conditions_gate and (condition_true(rc, C.COND_SUSPENDED) or spec.get("suspend") is True):
            # Suspension is atomic: status first moves to Suspending, then the Pods go.
            return

        heads = [x for x in pods if node_type(x) == C.NODE_TYPE_HEAD]
        if await self._recreate_upgrade(p, pods, heads):
            return

        # A missing head is created alongside the workers rather than before them: workers wait for the
        # GCS in their init container anyway, and one round trip less per cluster matters at scale.
        head_create = await self._reconcile_head(p)
        await gather_first_error([*([head_create] if head_create else []), self._reconcile_groups(p)])

    def _group_pods(self, p: ReconcilePass, kind: str, group: str | None = None) -> list[Obj]:
        return [
            x
            for x in self.s.store.cluster_pods(p.namespace, p.name)
            if node_type(x) == kind
            and (group is None or (meta(x).get("labels") or {}).get(C.LABEL_GROUP) == group)
        ]

    async def _reconcile_groups(self, p: ReconcilePass) -> None:
        s = self.s
        spec = spec_of(p.cluster)
        random_delete = s.settings.random_pod_delete
        scaling = autoscaling(p.cluster)
        indexing = s.settings.gate(features.RAY_MULTI_HOST_INDEXING, True)
        for group in spec.get("workerGroupSpecs") or []:
            gname = str(group.get("groupName", ""))
            if not s.expectations.satisfied(p.key, gname, s.store.pods):
                log.debug("%s: group %s waits for the cache to catch up", p.key, gname)
                p.come_back_soon()
                continue
            # Read the Pods right after the expectations check, with no await in between: the check
            # vouches for the cache as it is now, not for a list taken before an earlier await (the
            # informer may have moved on meanwhile, and a stale list would undercount).
            group_pods = self._group_pods(p, C.NODE_TYPE_WORKER, gname)
            plan = podplan.plan_worker_group(
                group,
                group_pods,
                desired_pods=int(s.builders.desired_worker_replicas(group)),
                autoscaling=scaling,
                random_delete=random_delete,
                multi_host_indexing=indexing,
                should_delete=lambda x: should_delete(s.builders, x),
            )
            await self._execute(p, group, group_pods, plan)

    async def _recreate_upgrade(self, p: ReconcilePass, pods: list[Obj], heads: list[Obj]) -> bool:
        rc, s = p.cluster, self.s
        strategy = (spec_of(rc).get("upgradeStrategy") or {}).get("type")
        if strategy != "Recreate" or not heads:
            return False
        head = heads[0]
        ann = meta(head).get("annotations") or {}
        want = s.builders.upgrade_recreate_hash(spec_of(rc))
        have = ann.get(C.ANN_UPGRADE_RECREATE_HASH)
        if have == want:
            return False
        if ann.get(C.ANN_KUBERAY_VERSION) != C.KUBERAY_VERSION:
            # A new operator version changes the hash without the user changing anything: re-stamp the
            # head instead of restarting the whole cluster (KubeRay v1.6 rule).
            await s.client.patch(
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
                p.namespace,
            )
            return False
        await self._delete_all(
            p,
            pods,
            cluster_selector(p.name),
            reason_ok=C.EV_DELETED_POD,
            reason_fail=C.EV_FAILED_DELETE_POD_COLLECTION,
            why="for the Recreate upgrade strategy",
            action=ACT_DELETE,
        )
        s.expectations.forget(p.key)
        return True

    async def _delete_all(
        self,
        p: ReconcilePass,
        pods: list[Obj],
        selector: str,
        *,
        reason_ok: str,
        reason_fail: str,
        why: str,
        action: str,
    ) -> None:
        if not any(not is_terminating(x) for x in pods):
            return
        rc, s = p.cluster, self.s
        ns, name = p.namespace, p.name
        try:
            await s.client.delete_collection(PODS, ns, label_selector=selector)
        except ApiError as e:
            s.writer.event(
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
        s.expectations.forget((ns, name), group)
        s.writer.event(rc, NORMAL, reason_ok, action, f"Deleted Pods for RayCluster {ns}/{name} {why}")

    async def _reconcile_head(self, p: ReconcilePass) -> Awaitable[None] | None:
        """Deletes what must go (raising to stop this pass); returns the creation of a missing head, for
        the caller to run alongside the workers."""
        rc, s = p.cluster, self.s
        ns, ckey = p.namespace, p.key
        if not s.expectations.satisfied(ckey, C.HEAD_GROUP_NAME, s.store.pods):
            p.come_back_soon()
            return None
        heads = self._group_pods(p, C.NODE_TYPE_HEAD)  # read right after the check, see _reconcile_groups
        if len(heads) == 1:
            head = heads[0]
            dele, reason = should_delete(s.builders, head)
            if not dele:
                return None
            try:
                await s.client.delete(PODS, name_of(head), ns, ignore_not_found=True)
            except ApiError as e:
                s.writer.event(
                    rc,
                    WARNING,
                    C.EV_FAILED_DELETE_HEAD_POD,
                    ACT_DELETE,
                    f"Failed deleting head Pod {ns}/{name_of(head)}; {reason}, {e}",
                )
                raise ReconcileError(str(e), FAILED_DELETE_HEAD_POD) from e
            s.expectations.expect_delete(ckey, C.HEAD_GROUP_NAME, name_of(head))
            s.writer.event(
                rc,
                NORMAL,
                C.EV_DELETED_HEAD_POD,
                ACT_DELETE,
                f"Deleted head Pod {ns}/{name_of(head)}; {reason}",
            )
            raise ReconcileError(reason)
        if not heads:
            ann = meta(rc).get("annotations") or {}
            if (
                condition_true(rc, C.COND_PROVISIONED)
                and ann.get(C.ANN_DISABLE_PROVISIONED_HEAD_RESTART) == "true"
            ):
                return None
            pod = ensure_owned(s.builders.head_pod(rc, s.opts), rc)
            return self._create_head(p, pod)
        # More than one head: keep the healthy ones out of harm's way, delete the rest (KubeRay).
        extras = [x for x in heads if (x.get("status") or {}).get("phase") not in ("Running", "Pending")]
        for x in extras:
            if is_terminating(x):
                continue
            try:
                await s.client.delete(PODS, name_of(x), ns, ignore_not_found=True)
            except ApiError as e:
                raise ReconcileError(str(e), FAILED_DELETE_HEAD_POD) from e
            s.expectations.expect_delete(ckey, C.HEAD_GROUP_NAME, name_of(x))
        if len(heads) - len(extras) > 1:
            raise ReconcileError(f"{len(heads) - len(extras)} head Pods found for RayCluster {ckey}")
        return None

    async def _create_pod(
        self, p: ReconcilePass, pod: Obj, group: str, fail_event: str, fail_reason: str, what: str
    ) -> Obj:
        """POST one Pod and record the expectation. The name is drawn here, the way the API server would
        draw it for generateName (same alphabet, same length): if the request times out, the Pod may exist
        anyway, and knowing its name lets the group wait for it instead of creating a second one."""
        s = self.s
        ns, ckey = p.namespace, p.key
        md = pod.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = f"{str(md.pop('generateName'))[:58]}{random_suffix()}"
        try:
            created: Obj = await s.client.create(PODS, pod, ns)
        except ApiError as e:
            s.writer.event(
                p.cluster,
                WARNING,
                fail_event,
                ACT_CREATE,
                f"Failed to create {what} {ns}/{name_of(pod)}, {e}",
            )
            raise ReconcileError(str(e), fail_reason) from e
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            # Unknown outcome: expect the Pod; the cache shows it, or the 30 s expectation timeout ends the wait.
            s.expectations.expect_create(ckey, group, name_of(pod))
            raise ReconcileError(f"creating {what} {ns}/{name_of(pod)}: {e!r}", fail_reason) from e
        s.expectations.expect_create(ckey, group, name_of(created), uid=meta(created).get("uid"))
        return created

    async def _create_head(self, p: ReconcilePass, pod: Obj) -> None:
        created = await self._create_pod(
            p, pod, C.HEAD_GROUP_NAME, C.EV_FAILED_CREATE_HEAD_POD, FAILED_CREATE_HEAD_POD, "head Pod"
        )
        self.s.writer.event(
            p.cluster,
            NORMAL,
            C.EV_CREATED_HEAD_POD,
            ACT_CREATE,
            f"Created head Pod {p.namespace}/{name_of(created)}",
        )

    async def _execute(
        self, p: ReconcilePass, group: Mapping[str, Any], group_pods: list[Obj], plan: GroupPlan
    ) -> None:
        rc, s = p.cluster, self.s
        ns, name, ckey = p.namespace, p.name, p.key
        gname = str(group.get("groupName", ""))
        if plan.delete_all:
            await self._delete_all(
                p,
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

        sem = asyncio.Semaphore(max(1, s.settings.pod_create_concurrency))

        async def delete_one(pod: str, reason: str) -> None:
            async with sem:
                try:
                    await s.client.delete(PODS, pod, ns)
                except ApiError as e:
                    if not e.not_found:
                        s.writer.event(
                            rc,
                            WARNING,
                            C.EV_FAILED_DELETE_WORKER_POD,
                            ACT_DELETE,
                            f"Failed deleting worker Pod {ns}/{pod}; {reason}, {e}",
                        )
                        raise ReconcileError(str(e), FAILED_DELETE_WORKER_POD) from e
                    return
                s.expectations.expect_delete(ckey, gname, pod)
                s.writer.event(
                    rc,
                    NORMAL,
                    C.EV_DELETED_WORKER_POD,
                    ACT_DELETE,
                    f"Deleted worker Pod {ns}/{pod}; {reason}",
                )

        await gather_first_error([delete_one(x, r) for x, r in plan.delete])
        if plan.stop:
            raise ReconcileError(plan.stop)

        todo = plan.create
        if len(todo) > s.settings.pod_batch:
            # Whole multi-host replicas only: never split one replica across two batches.
            cut = s.settings.pod_batch
            while (
                cut < len(todo)
                and todo[cut].replica_name is not None
                and todo[cut].replica_name == todo[cut - 1].replica_name
            ):
                cut += 1
            todo = todo[:cut]
            p.come_back_soon()

        async def create_one(spec: PodToCreate) -> None:
            async with sem:
                # Built only once it may be sent: a 250-Pod batch of whole Pod dicts would otherwise sit
                # in memory while the semaphore lets 32 through.
                pod = ensure_owned(
                    s.builders.worker_pod(
                        rc,
                        group,
                        s.opts,
                        replica_index=spec.replica_index,
                        replica_name=spec.replica_name,
                        host_index=spec.host_index,
                    ),
                    rc,
                )
                created = await self._create_pod(
                    p, pod, gname, C.EV_FAILED_CREATE_WORKER_POD, FAILED_CREATE_WORKER_POD, "worker Pod"
                )
            created_names.append(name_of(created))

        created_names: list[str] = []
        try:
            await gather_first_error([create_one(x) for x in todo])
        finally:
            if created_names:
                # One Event per batch, not per Pod as KubeRay does: at scale the per-Pod Events doubled the
                # API writes of a scale-up and slowed the Pod creations they describe. The reason is
                # KubeRay's; the note names every Pod (the recorder truncates past 1 KiB).
                what = "worker Pod" if len(created_names) == 1 else f"{len(created_names)} worker Pods"
                s.writer.event(
                    rc,
                    NORMAL,
                    C.EV_CREATED_WORKER_POD,
                    ACT_CREATE,
                    f"Created {what} in group {gname}: "
                    + ", ".join(f"{ns}/{n}" for n in sorted(created_names)),
                )
