"""The RayWorkerGroup controller: each worker group of a RayCluster as a scale target (docs/scaling.md).

Keyed by RayCluster. Per reconcile:
  1. keep one RayWorkerGroup `<cluster>-<group>` per worker group: create the missing ones, delete those
     whose group was renamed or removed;
  2. per group, `rayworkergroup_plan.decide_sync` says which way the replica count flows; a PULL patches
     the RayWorkerGroup's spec.replicas, a PUSH patches the RayCluster;
  3. a PUSH that shrinks the group is a safe scale-down: the plan names what goes (replicas without Pods,
     Pods not running Ray, then idle Ray nodes after Ray drained them), and the RayCluster gets `replicas`
     and `scaleStrategy.workersToDelete` in one JSON patch that first tests the resourceVersion, so
     KubeRay's Pod-count logic never picks a Pod by itself;
  4. write the RayWorkerGroup's status when it changed.

Creating a RayWorkerGroup and writing its status are bookkeeping: they wait (a few seconds at most) while
the operator has a burst of Pod creates in flight, so a new cluster's Pods reach the API server first.

A RayService's groups are a second controller over the same reconciler, keyed by RayService
(`reconcile_service`): one RayWorkerGroup `<rayservice>-<group>` per group of `rayClusterConfig`, and steps
2-4 against that group on the service's active cluster. When the RayService promotes a new cluster, the
RayWorkerGroup is handed over (rayworkergroup_plan.handed_over): its number goes to the new cluster, which the
RayService created at that size already (rayop.builders.workergroup.service_group_sizes).

This is the one place a reconciler writes a RayCluster's spec (ARCHITECTURE.md), and only for a group
Ray's autoscaler does not manage. Draining runs in the Ray cluster, from a short-lived Pod built from the
head Pod (rayop.builders.workergroup.build_drain_pod), as the Redis cleanup Job does: the operator needs
neither the `ray` package nor a route to the GCS. Everything it must remember across restarts is in the
API server: the RayWorkerGroup's status and the drain Pods themselves.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from rayop.api import constants as C
from rayop.api import workergroup as W
from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES, RAYWORKERGROUPS
from rayop.base.names import random_suffix
from rayop.base.objects import (
    controller_ref,
    is_controlled_by,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    ref,
    spec_of,
    status_of,
)
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders import pod as pod_builders
from rayop.builders import rayservice as RB
from rayop.builders import workergroup as B
from rayop.builders.options import BuildOptions
from rayop.builders.service import service_ports
from rayop.controllers import cached_fields
from rayop.controllers import rayworkergroup_plan as P
from rayop.controllers.common import (
    ACT_CREATE,
    ACT_DELETE,
    ACT_UPDATE,
    INDEX_CLUSTER,
    NORMAL,
    POD_SELECTOR,
    WARNING,
    CalmGate,
    StatusPacer,
    Writer,
    cluster_key,
    node_type,
    split_key,
)
from rayop.controllers.podplan import is_running_and_ready
from rayop.controllers.rayjob import Dashboards
from rayop.controllers.settings import ControllerSettings, WorkerGroupSettings
from rayop.ray.dashboard import DashboardClient, DashboardError
from rayop.ray.nodes import RayNode, observe_nodes
from rayop.runtime.cache import index_by_label
from rayop.runtime.client import PODS, ApiClient, ApiError
from rayop.runtime.protocols import Cache, ControllerHandle, Key, Manager, Recorder, Result

log = logging.getLogger("rayop.controllers.rayworkergroup")

# Index of the RayWorkerGroup cache: "<namespace>/<RayCluster>" of spec.rayClusterName.
INDEX_OWNER_CLUSTER = "rayworkergroup-cluster"
# Index of the RayWorkerGroup cache: "<namespace>/<RayService>" of spec.rayServiceName.
INDEX_OWNER_SERVICE = "rayworkergroup-service"
# How soon to look again when our own write has not reached the cache yet.
CACHE_LAG_REQUEUE = 0.5
# How long a RayWorkerGroup we created may be missing from the cache before we create it again (someone
# may have deleted it at once).
CREATED_CACHE_WAIT = 5.0
# Longest wait before a worker whose drains keep failing gets another drain Pod.
MAX_DRAIN_BACKOFF = 300.0
# A DNS-1123 subdomain, what the API server accepts as an object name.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def valid_name(name: str) -> bool:
    return len(name) <= 253 and bool(_NAME.match(name))


def _by_cluster_name(obj: Obj) -> list[str]:
    owner = spec_of(obj).get("rayClusterName")
    return [f"{namespace_of(obj)}/{owner}"] if isinstance(owner, str) and owner else []


def _by_service_name(obj: Obj) -> list[str]:
    owner = spec_of(obj).get("rayServiceName")
    return [f"{namespace_of(obj)}/{owner}"] if isinstance(owner, str) and owner else []


@dataclass
class Store:
    """The caches the reconciler reads (informers in production, fakes in unit tests)."""

    clusters: Cache
    groups: Cache  # RayWorkerGroups, indexed by INDEX_OWNER_CLUSTER
    pods: Cache  # Ray Pods, indexed by INDEX_CLUSTER
    drains: Cache  # drain Pods, indexed by INDEX_CLUSTER
    services: Cache | None = None  # RayServices (None: their groups get no RayWorkerGroups)


class RayWorkerGroupReconciler:
    def __init__(
        self,
        client: ApiClient,
        store: Store,
        recorder: Recorder,
        settings: WorkerGroupSettings,
        build_options: BuildOptions,
        *,
        dashboards: Dashboards | None = None,
        observe: Callable[[DashboardClient], Awaitable[list[RayNode]]] = observe_nodes,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.w = Writer(client, recorder)
        self.cfg = settings
        self.opts = build_options
        self.dashboards = dashboards or Dashboards(
            client, use_proxy=settings.use_kubernetes_proxy, resolve=settings.dashboard_resolver
        )
        self.observe = observe
        self.now = now
        # resourceVersions our own writes replaced, per object: while the cache still shows one, a
        # decision from it would act on a state we know is gone.
        self._replaced: dict[tuple[str, str, str], str] = {}
        # (namespace, RayWorkerGroup) -> the generation whose clamping was reported, to say it once.
        self._clamp_reported: dict[tuple[str, str], object] = {}
        # (namespace, worker Pod) -> (failed drains in a row, no new drain before this time): a drain Pod
        # that cannot ask Ray (bad image, GCS unreachable) is not recreated every few seconds.
        self._drain_failures: dict[tuple[str, str], tuple[int, float]] = {}
        # (namespace, RayWorkerGroup, reason) -> the last note of an event a waiting scale-down repeats
        # on every retry: said again only when it changes, so the per-object event budget (client-go's
        # spam filter) stays for the choices themselves.
        self._said: dict[tuple[str, str, str], str] = {}
        # Ready replicas counted up one Pod at a time are written a few times, not each.
        self._status_pacer = StatusPacer(settings.status_write_interval, settings.status_write_interval_max)
        # (namespace, RayWorkerGroup) -> when we created it: until the cache shows it, a reconcile that
        # does not see it waits for the cache instead of creating it again (answered 409).
        self._created: dict[tuple[str, str], float] = {}
        # Creating a RayWorkerGroup and writing its status wait while a burst of Pod creates is in flight.
        self._calm = CalmGate(lambda: client.busy, settings.calm_wait_max)

    # -- entry point ------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        ns, name = split_key(key)
        rc = self.store.clusters.get(ns, name)
        if rc is None:
            self._forget(ns, name)
            return Result()
        if self._behind(RAYCLUSTERS.plural, rc):
            return Result(CACHE_LAG_REQUEUE)
        spec = spec_of(rc)
        managed_by = spec.get("managedBy")
        if is_terminating(rc) or (managed_by and managed_by != C.MANAGED_BY_KUBERAY):
            return Result()
        ctl = controller_ref(rc)
        if ctl is not None and ctl.get("kind") == C.KIND_RAYSERVICE:
            # A RayService's groups are scale targets named after the service, not after this cluster
            # (reconcile_service).
            return Result()
        groups = [g for g in spec.get("workerGroupSpecs") or [] if isinstance(g, dict)]
        wanted = {
            B.worker_group_name(name, str(g.get("groupName") or "")): (i, g) for i, g in enumerate(groups)
        }
        await self._delete_unwanted(
            rc, self.store.groups.by_index(INDEX_OWNER_CLUSTER, cluster_key(ns, name)), wanted
        )
        results: list[Result] = []
        for rwg_name, (index, group) in wanted.items():
            results.append(await self._one_group(rc, rwg_name, group, (rc, index, group)))
        return _soonest(results)

    async def reconcile_service(self, key: Key) -> Result:
        """A RayService's groups: one RayWorkerGroup `<rayservice>-<group>` per group of its spec, synced
        with that group on the service's active cluster, whichever it is now. The groups are the spec's,
        so a group renamed or removed there loses its RayWorkerGroup at once; a group the active cluster
        does not run yet (it comes with the pending cluster) gets its RayWorkerGroup, which syncs once
        that cluster is promoted."""
        ns, name = split_key(key)
        if self.store.services is None:
            return Result()
        rs = self.store.services.get(ns, name)
        if rs is None:
            self._forget(ns, name)
            return Result()
        managed_by = spec_of(rs).get("managedBy")
        if is_terminating(rs) or (managed_by and managed_by != C.MANAGED_BY_KUBERAY):
            return Result()
        config = spec_of(rs).get("rayClusterConfig")
        groups = [
            g
            for g in (config.get("workerGroupSpecs") if isinstance(config, dict) else None) or []
            if isinstance(g, dict)
        ]
        wanted = {
            B.worker_group_name(name, str(g.get("groupName") or "")): (i, g) for i, g in enumerate(groups)
        }
        await self._delete_unwanted(
            rs, self.store.groups.by_index(INDEX_OWNER_SERVICE, cluster_key(ns, name)), wanted
        )
        active_name = P.active_cluster(rs)
        rc = self.store.clusters.get(ns, active_name) if active_name else None
        if rc is not None and (not is_controlled_by(rc, rs) or is_terminating(rc)):
            rc = None
        if rc is not None and self._behind(RAYCLUSTERS.plural, rc):
            return Result(CACHE_LAG_REQUEUE)
        live = [g for g in spec_of(rc).get("workerGroupSpecs") or [] if isinstance(g, dict)] if rc else []
        at = {str(g.get("groupName") or ""): (i, g) for i, g in enumerate(live)}
        results: list[Result] = []
        for rwg_name, (_, group) in wanted.items():
            gname = str(group.get("groupName") or "")
            target = (rc, *at[gname]) if rc is not None and gname in at else None
            # A new RayWorkerGroup starts at what runs now, else at the spec's size.
            seed = target[2] if target is not None else group
            results.append(await self._one_group(rs, rwg_name, seed, target))
        await self._tidy_old_drains(rs, active_name)
        return _soonest(results)

    async def _delete_unwanted(
        self, owner: Obj, candidates: Sequence[Obj], wanted: Mapping[str, tuple[int, Mapping[str, Any]]]
    ) -> None:
        for w in candidates:
            if not is_controlled_by(w, owner):
                continue
            if name_of(w) not in wanted or spec_of(w).get("groupName") != (
                wanted[name_of(w)][1].get("groupName")
            ):
                await self._delete_group(owner, w)

    async def _tidy_old_drains(self, rs: Obj, active_name: str) -> None:
        """Drain Pods belong to their RayWorkerGroup, not to the cluster they drained: once a RayService
        moved to another cluster, the finished ones of its older clusters are removed here."""
        ns = namespace_of(rs)
        for rc in self.store.clusters.list(ns, RB.originated_labels(rs)):
            if name_of(rc) == active_name:
                continue
            for d in self.store.drains.by_index(INDEX_CLUSTER, cluster_key(ns, name_of(rc))):
                if not is_terminating(d) and P.drain_result(d).finished:
                    await self._delete_drain(d)

    def _forget(self, ns: str, name: str) -> None:
        """Drop what we remembered about a deleted RayCluster and its RayWorkerGroups."""

        def ours(obj_ns: str, obj_name: str) -> bool:
            return obj_ns == ns and (obj_name == name or obj_name.startswith(f"{name}-"))

        self._replaced = {k: v for k, v in self._replaced.items() if not ours(k[1], k[2])}
        self._clamp_reported = {k: v for k, v in self._clamp_reported.items() if not ours(*k)}
        self._said = {k: v for k, v in self._said.items() if not ours(k[0], k[1])}
        self._status_pacer.forget(lambda k: ours(*k))
        self._calm.forget(lambda k: ours(*k))
        self._created = {k: v for k, v in self._created.items() if not ours(*k)}

    def _behind(self, kind: str, obj: Obj) -> bool:
        key = (kind, namespace_of(obj), name_of(obj))
        replaced = self._replaced.get(key)
        if replaced is None:
            return False
        if meta(obj).get("resourceVersion") == replaced:
            return True
        del self._replaced[key]
        return False

    def _wrote(self, kind: str, before: Obj) -> None:
        rv = meta(before).get("resourceVersion")
        if rv:
            self._replaced[(kind, namespace_of(before), name_of(before))] = str(rv)

    # -- one group --------------------------------------------------------------------------------

    async def _one_group(
        self,
        owner: Obj,
        rwg_name: str,
        seed: Mapping[str, Any],
        target: tuple[Obj, int, Mapping[str, Any]] | None,
    ) -> Result:
        """Keep the RayWorkerGroup `rwg_name` of `owner` (a RayCluster or RayService; created from the
        group `seed`) and sync it with `target`: (the RayCluster that runs the group, the group's index
        there, the group), or None when no cluster runs it yet."""
        ns = namespace_of(owner)
        gname = str(seed.get("groupName") or "")
        if not valid_name(rwg_name):
            self.w.event(
                owner,
                WARNING,
                W.EV_FAILED_CREATE,
                ACT_CREATE,
                f"No {W.KIND} for worker group {gname!r}: {rwg_name!r} is not a valid object name "
                "(lower-case letters, digits, '-' and '.')",
            )
            return Result()
        rwg = self.store.groups.get(ns, rwg_name)
        if rwg is None:
            now = self.now()
            if now - self._created.get((ns, rwg_name), float("-inf")) < CREATED_CACHE_WAIT:
                return Result(CACHE_LAG_REQUEUE)
            wait = self._calm.wait((ns, rwg_name), now)
            if wait:
                return Result(wait)
            await self._create_group(owner, seed)
            self._created[(ns, rwg_name)] = now
            return Result()
        self._created.pop((ns, rwg_name), None)
        if not is_controlled_by(rwg, owner):
            ctl = controller_ref(rwg)
            if ctl is not None and ctl.get("kind") == owner.get("kind") and ctl.get("name") == name_of(owner):
                return Result(2.0)  # an owner of the same name that was deleted: its objects are going
            self.w.event(
                owner,
                WARNING,
                W.EV_NAME_TAKEN,
                ACT_CREATE,
                f"{W.KIND} {ns}/{rwg_name} exists and belongs to someone else; worker group {gname!r} has no "
                "scale target",
            )
            return Result()
        if target is None:
            return Result()  # no cluster runs the group yet; the promotion of one brings us back
        if self._behind(W.PLURAL, rwg):
            return Result(CACHE_LAG_REQUEUE)
        rc, index, group = target
        return await self.sync(rc, index, group, rwg)

    async def _create_group(self, owner: Obj, group: Mapping[str, Any]) -> None:
        obj = B.build_worker_group(owner, group)
        await self.w.create(
            owner,
            RAYWORKERGROUPS,
            obj,
            what=W.KIND,
            created=W.EV_CREATED,
            failed=W.EV_FAILED_CREATE,
        )

    async def _delete_group(self, owner: Obj, rwg: Obj) -> None:
        await self.w.delete(
            owner,
            RAYWORKERGROUPS,
            name_of(rwg),
            what=W.KIND,
            deleted=W.EV_DELETED,
            failed=W.EV_FAILED_DELETE,
            propagation="Background",
        )

    def _group_pods(self, rc: Obj, gname: str) -> list[Obj]:
        return [
            p
            for p in self.store.pods.by_index(INDEX_CLUSTER, cluster_key(namespace_of(rc), name_of(rc)))
            if node_type(p) == C.NODE_TYPE_WORKER and labels_of(p).get(C.LABEL_GROUP) == gname
        ]

    def _drain_pods(self, rc: Obj, gname: str) -> list[Obj]:
        return [
            p
            for p in self.store.drains.by_index(INDEX_CLUSTER, cluster_key(namespace_of(rc), name_of(rc)))
            if labels_of(p).get(C.LABEL_GROUP) == gname and not is_terminating(p)
        ]

    async def sync(self, rc: Obj, index: int, group: Mapping[str, Any], rwg: Obj) -> Result:
        """Bring one group and its RayWorkerGroup together, then write the RayWorkerGroup's status."""
        gname = str(group.get("groupName") or "")
        sync = P.decide_sync(rwg, spec_of(rc), group, name_of(rc))
        pods = self._group_pods(rc, gname)
        drains = self._drain_pods(rc, gname)
        result = Result()
        down: P.ScaleDown | None = None
        observed: tuple[int, int] | None = None
        previous = str(status_of(rwg).get("rayClusterName") or "")
        if previous and previous != name_of(rc):
            brought = f"; brought to {sync.replicas} replicas" if sync.action == P.PUSH else ""
            self.w.event(
                rwg,
                NORMAL,
                W.EV_FOLLOWED_ACTIVE_CLUSTER,
                ACT_UPDATE,
                f"RayService {spec_of(rwg).get('rayServiceName')!r} serves from RayCluster {name_of(rc)!r} "
                f"now (was {previous!r}): worker group {gname!r} is sized there{brought}",
            )
        if sync.ignored:
            self.w.event(
                rwg,
                WARNING,
                W.EV_SCALE_IGNORED,
                ACT_UPDATE,
                f"spec.replicas={sync.requested} was ignored: Ray's autoscaler sizes worker group {gname!r} "
                f"(RayCluster {name_of(rc)!r} has enableInTreeAutoscaling: true); it mirrors the "
                f"RayCluster's {sync.current}",
            )
        if sync.action == P.PULL:
            pulled = await self._pull(rc, rwg, sync)
            if pulled is None:
                return Result(CACHE_LAG_REQUEUE)
            rwg = pulled
            observed = (int(meta(rwg).get("generation") or 0), sync.current)
        elif sync.action == P.PUSH:
            self._report_clamp(rwg, sync, gname)
            if sync.replicas > sync.current or sync.scaled_by == W.SCALED_BY_NONE:
                replace = [] if sync.scaled_by == W.SCALED_BY_NONE else self._drained(group, pods, drains)
                names = [n for c in replace for n in c.unit.pod_names]
                if not await self._patch_cluster(rc, index, group, sync.replicas, pods, names):
                    return Result(CACHE_LAG_REQUEUE)
                self._report_replaced(rwg, replace)
            else:
                down, result = await self._scale_down(rc, index, group, rwg, sync, pods, drains)
        else:
            observed = (int(meta(rwg).get("generation") or 0), sync.current)
            if not await self._tidy(rc, index, group, rwg, pods, drains, sync):
                return Result(CACHE_LAG_REQUEUE)
            for reason in (W.EV_WORKERS_BUSY, W.EV_RAY_UNREACHABLE):
                self._said.pop((namespace_of(rwg), name_of(rwg), reason), None)
        status = P.worker_group_status(
            rwg,
            cluster_name=name_of(rc),
            group=group,
            pods=pods,
            sync=sync,
            condition=P.synced_condition(sync, down),
            now=datetime.fromtimestamp(self.now(), UTC),
            observed=observed,
        )
        return _soonest([result, await self._write_status(rwg, status, P.desired_pods(sync))])

    def _report_clamp(self, rwg: Obj, sync: P.Sync, gname: str) -> None:
        if not sync.clamped:
            return
        key = (namespace_of(rwg), name_of(rwg))
        gen = meta(rwg).get("generation")
        if self._clamp_reported.get(key) == gen:
            return
        self._clamp_reported[key] = gen
        bound = (
            f"at least {sync.lo} (minReplicas)"
            if sync.requested < sync.lo
            else f"at most {sync.hi} (maxReplicas)"
        )
        self.w.event(
            rwg,
            NORMAL,
            W.EV_CLAMPED,
            ACT_UPDATE,
            f"Asked for {sync.requested} replicas; worker group {gname!r} runs {bound}, so it runs "
            f"{sync.replicas}",
        )

    # -- writes -------------------------------------------------------------------------------------

    async def _pull(self, rc: Obj, rwg: Obj, sync: P.Sync) -> Obj | None:
        """spec.replicas := the RayCluster's number (merge patch guarded by the resourceVersion)."""
        patch = {
            "metadata": {"resourceVersion": meta(rwg).get("resourceVersion")},
            "spec": {"replicas": sync.replicas},
        }
        try:
            out: Obj = await self.client.patch(RAYWORKERGROUPS, name_of(rwg), patch, namespace_of(rwg))
        except ApiError as e:
            if e.conflict or e.not_found:
                return None
            raise
        self._wrote(W.PLURAL, rwg)
        if sync.scaled_by != W.SCALED_BY_RAY_AUTOSCALER:
            self.w.event(
                out,
                NORMAL,
                W.EV_SYNCED_FROM_CLUSTER,
                ACT_UPDATE,
                f"RayCluster {name_of(rc)!r} was edited to {sync.current} replicas of this group; spec.replicas "
                f"follows (was {sync.requested})",
            )
        return out

    async def _patch_cluster(
        self,
        rc: Obj,
        index: int,
        group: Mapping[str, Any],
        replicas: int,
        pods: Sequence[Obj],
        delete: Sequence[str],
    ) -> bool:
        """One JSON patch of the group's `replicas` and `workersToDelete`, applied only to the RayCluster as
        we read it (the first op tests its resourceVersion, the second the group's name at that index).
        Names already listed stay while their Pods exist; the rest are dropped. False on a conflict."""
        live = {name_of(p) for p in pods if not is_terminating(p)}
        listed = [n for n in (group.get("scaleStrategy") or {}).get("workersToDelete") or [] if n in live]
        names = list(dict.fromkeys([*listed, *delete]))
        base = f"/spec/workerGroupSpecs/{index}"
        ops: list[Obj] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta(rc).get("resourceVersion")},
            {"op": "test", "path": f"{base}/groupName", "value": group.get("groupName")},
            {"op": "add", "path": f"{base}/replicas", "value": replicas},
        ]
        if names or (group.get("scaleStrategy") or {}).get("workersToDelete"):
            ops.append({"op": "add", "path": f"{base}/scaleStrategy", "value": {"workersToDelete": names}})
        try:
            await self.client.patch(RAYCLUSTERS, name_of(rc), ops, namespace_of(rc), patch_type="json")
        except ApiError as e:
            if e.conflict or e.not_found or _failed_test(e):
                log.debug("%s: patch skipped: %s", ref(rc), e.message)
                return False
            raise
        self._wrote(RAYCLUSTERS.plural, rc)
        return True

    async def _write_status(self, rwg: Obj, status: Obj, desired: int) -> Result:
        """Write the status when it changed; Pod counts on their way to `desired` (see
        P.only_count_progress) wait until an interval has passed since this group's last status write
        (or since it was first seen without a status), and any write waits while a burst of Pod creates
        is in flight (CalmGate); the returned wait brings the reconcile back to write it."""
        old = status_of(rwg)
        if _same_status(old, status):
            return Result()
        key = (namespace_of(rwg), name_of(rwg))
        now = self.now()
        progress = P.only_count_progress(old, status, desired)
        if progress and not old:
            self._status_pacer.hold(key, now)
        wait = self._status_pacer.wait(key, now, progress) or self._calm.wait(key, now)
        if wait:
            return Result(wait)
        try:
            await self.w.write_status(RAYWORKERGROUPS, rwg, status)
        except ApiError as e:
            if e.conflict or e.not_found:
                return Result()  # the watch event that made our copy stale brings us back
            raise
        self._status_pacer.wrote(key, now, progress)
        self._wrote(W.PLURAL, rwg)
        return Result()

    async def _tidy(
        self,
        rc: Obj,
        index: int,
        group: Mapping[str, Any],
        rwg: Obj,
        pods: Sequence[Obj],
        drains: Sequence[Obj],
        sync: P.Sync,
    ) -> bool:
        """In sync: replace workers a scale-down drained but no longer needs (the size went back up while
        their drains ran), and remove what a finished scale-down left behind (drain Pods, names of deleted
        Pods). False when the RayCluster changed under the patch."""
        await self._delete_used_drains(pods, drains)
        if sync.scaled_by != W.SCALED_BY_SCALE_TARGET:
            return True
        replace = self._drained(group, pods, drains)
        listed = P.listed_for_deletion(group)
        live = {name_of(p) for p in pods if not is_terminating(p)}
        if replace or (listed and not live & listed):
            new = [n for c in replace for n in c.unit.pod_names]
            if not await self._patch_cluster(rc, index, group, sync.current, pods, new):
                return False
            self._report_replaced(rwg, replace)
        return True

    def _drained(
        self, group: Mapping[str, Any], pods: Sequence[Obj], drains: Sequence[Obj]
    ) -> list[P.Choice]:
        return P.drained_replicas(P.choosable_units(group, pods), [P.drain_result(d) for d in drains])

    def _report_replaced(self, rwg: Obj, replaced: Sequence[P.Choice]) -> None:
        for c in replaced:
            self.w.event(rwg, NORMAL, W.EV_SELECTED_WORKER, ACT_DELETE, f"Replacing {c.unit.label}: {c.why}")

    async def _delete_used_drains(self, pods: Sequence[Obj], drains: Sequence[Obj]) -> None:
        live = [name_of(p) for p in pods if not is_terminating(p)]
        by_name = {name_of(d): d for d in drains}
        for name in P.drains_to_delete([P.drain_result(d) for d in drains], live):
            await self._delete_drain(by_name[name])

    async def _delete_drain(self, pod: Obj) -> None:
        try:
            await self.client.delete(PODS, name_of(pod), namespace_of(pod), ignore_not_found=True)
        except ApiError as e:
            log.info("drain Pod %s not deleted: %s", ref(pod), e.message)

    # -- scale-down -----------------------------------------------------------------------------------

    async def _scale_down(
        self,
        rc: Obj,
        index: int,
        group: Mapping[str, Any],
        rwg: Obj,
        sync: P.Sync,
        pods: Sequence[Obj],
        drains: Sequence[Obj],
    ) -> tuple[P.ScaleDown, Result]:
        units = P.choosable_units(group, pods)
        results = [P.drain_result(d) for d in drains]
        nodes: list[RayNode] | None = None
        unknown = ""
        if any(u.ready for u in units) and sync.current - sync.replicas > max(0, sync.current - len(units)):
            try:
                nodes = await self._ray_nodes(rc)
            except (DashboardError, ApiError, aiohttp.ClientError, TimeoutError, ConnectionError) as e:
                unknown = str(e)[:300]
        ns = namespace_of(rc)
        for r in results:
            if r.state == P.DRAIN_FAILED:
                count = self._drain_failures.get((ns, r.worker), (0, 0.0))[0] + 1
                delay = min(MAX_DRAIN_BACKOFF, self.cfg.retry_seconds * 2**count)
                self._drain_failures[(ns, r.worker)] = (count, self.now() + delay)
            elif r.state in (P.DRAIN_ACCEPTED, P.DRAIN_REFUSED):
                self._drain_failures.pop((ns, r.worker), None)
        # Forget failures nobody has retried for a long while (the Pod went, or the scale-down ended).
        self._drain_failures = {
            k: v for k, v in self._drain_failures.items() if v[1] > self.now() - MAX_DRAIN_BACKOFF
        }
        held = {
            worker: f"draining {worker} failed {count} time(s) in a row; trying again in {until - self.now():.0f} s"
            for (wns, worker), (count, until) in self._drain_failures.items()
            if wns == ns and until > self.now()
        }
        plan = P.plan_scale_down(
            units,
            current=sync.current,
            target=sync.replicas,
            nodes=nodes,
            unknown=unknown,
            drains=results,
            max_drains=self.cfg.drains_in_flight,
            held=held,
        )
        if unknown and plan.blocked:
            self._say_once(
                rwg,
                WARNING,
                W.EV_RAY_UNREACHABLE,
                f"Cannot tell which workers are idle, so only Pods that are not ready may go: {unknown}",
            )
        if plan.removed or plan.replace:
            names = [n for c in [*plan.remove, *plan.replace] for n in c.unit.pod_names]
            new = sync.current - plan.removed
            if not await self._patch_cluster(rc, index, group, new, pods, names):
                return plan, Result(CACHE_LAG_REQUEUE)
            if plan.free:
                self.w.event(
                    rwg,
                    NORMAL,
                    W.EV_SCALED,
                    ACT_UPDATE,
                    f"Dropped {plan.free} replica(s) whose Pods did not exist yet",
                )
            for c in plan.remove:
                self.w.event(
                    rwg, NORMAL, W.EV_SELECTED_WORKER, ACT_DELETE, f"Removing {c.unit.label}: {c.why}"
                )
            self._report_replaced(rwg, plan.replace)
        # Refusals and failures are reported once: their drain Pods go now. An accepted drain's Pod stays
        # until its worker is gone: it is the record that the worker must go.
        for r in results:
            if r.state == P.DRAIN_REFUSED:
                self.w.event(
                    rwg,
                    NORMAL,
                    W.EV_DRAIN_REFUSED,
                    ACT_DELETE,
                    f"Ray refused to drain the node of {r.worker}, which stays: {r.message or 'no longer idle'}",
                )
            elif r.state == P.DRAIN_FAILED:
                self.w.event(
                    rwg,
                    WARNING,
                    W.EV_DRAIN_FAILED,
                    ACT_DELETE,
                    f"Could not ask Ray to drain the node of {r.worker} (drain Pod {r.pod}): {r.message}",
                )
        await self._delete_used_drains(pods, drains)
        if plan.drain:
            await self._start_drains(rc, rwg, group, sync, plan.drain)
        if plan.short and plan.blocked:
            shown = "; ".join(c.why for c in plan.blocked[:5])
            more = f" (and {len(plan.blocked) - 5} more)" if len(plan.blocked) > 5 else ""
            self._say_once(
                rwg,
                NORMAL,
                W.EV_WORKERS_BUSY,
                f"{plan.short} more replica(s) to remove, but Ray is using the rest: {shown}{more}. Busy "
                f"workers are never removed; asking Ray again every {self.cfg.retry_seconds:g} s",
            )
            return plan, Result(self.cfg.retry_seconds)
        if plan.drain or plan.draining:
            # The drain Pods' watch events bring us back; this is only a safety net.
            return plan, Result(float(self.cfg.drain_deadline_seconds))
        return plan, Result()

    def _say_once(self, rwg: Obj, type_: str, reason: str, note: str) -> None:
        key = (namespace_of(rwg), name_of(rwg), reason)
        if self._said.get(key) == note:
            return
        self._said[key] = note
        self.w.event(rwg, type_, reason, ACT_UPDATE, note)

    async def _ray_nodes(self, rc: Obj) -> list[RayNode]:
        ports = service_ports(rc)
        port = ports.get("dashboard", C.PORT_DASHBOARD)
        address = f"{cl.fqdn_ray_ip(rc, self.cfg.cluster_domain)}:{port}"
        client = await self.dashboards.client(address, rc)
        try:
            nodes: list[RayNode] = await self.observe(client)
            return nodes
        finally:
            await client.close()

    async def _start_drains(
        self, rc: Obj, rwg: Obj, group: Mapping[str, Any], sync: P.Sync, starts: Sequence[P.DrainStart]
    ) -> None:
        head = pod_builders.build_head_pod(rc, self.opts)
        command = pod_builders.container_command(self.opts)
        message = f"rayop: {W.KIND} {namespace_of(rwg)}/{name_of(rwg)} scaled to {sync.requested}"
        for start in starts:
            for worker, node in start.nodes:
                pod = B.build_drain_pod(
                    rc,
                    head,
                    rwg,
                    group=str(group.get("groupName") or ""),
                    worker_pod=worker,
                    node_id=node.node_id,
                    message=message,
                    suffix=random_suffix(),
                    command=command,
                    cluster_domain=self.cfg.cluster_domain,
                    deadline_seconds=self.cfg.drain_deadline_seconds,
                )
                try:
                    await self.client.create(PODS, pod, namespace_of(rc))
                except ApiError as e:
                    if e.already_exists:
                        continue
                    self.w.event(
                        rwg,
                        WARNING,
                        W.EV_DRAIN_FAILED,
                        ACT_CREATE,
                        f"Could not create drain Pod {name_of(pod)} for {worker}: {e.message}",
                    )
                    raise
            self.w.event(
                rwg,
                NORMAL,
                W.EV_DRAINING_WORKER,
                ACT_DELETE,
                f"Draining {start.unit.label} in Ray before its Pod goes: Ray node "
                f"{', '.join(n.node_id[:12] for _, n in start.nodes)} is idle ({P.IDLE_WORDS})",
            )


def _failed_test(e: ApiError) -> bool:
    """A JSON patch whose `test` op failed: the object changed since we read it."""
    return e.status == 422 and "test" in e.message.lower()


def _same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return dict(old) == dict(new)


def _soonest(results: Sequence[Result]) -> Result:
    afters = [r.requeue_after for r in results if r.requeue_after]
    if any(r.requeue for r in results):
        return Result(requeue=True)
    return Result(min(afters)) if afters else Result()


# --- wiring ----------------------------------------------------------------------------------------


def _pod_changed(event: str, obj: Obj, old: Obj | None) -> bool:
    """A worker Pod event matters when it changes what the status counts or what a scale-down sees."""
    if event != "MODIFIED" or old is None:
        return True
    return (
        is_running_and_ready(obj) != is_running_and_ready(old)
        or is_terminating(obj) != is_terminating(old)
        or (status_of(obj).get("phase") != status_of(old).get("phase"))
    )


def _generation_or_delete(event: str, obj: Obj, old: Obj | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return meta(obj).get("generation") != meta(old).get("generation")


def setup(manager: Manager, settings: ControllerSettings) -> ControllerHandle | None:
    """Register the RayWorkerGroup controller on `manager` (nothing when disabled)."""
    own = settings.workergroups
    if not own.enabled:
        return None
    clusters = cached_fields.informer(manager, RAYCLUSTERS)
    services = cached_fields.informer(manager, RAYSERVICES)
    groups = cached_fields.informer(manager, RAYWORKERGROUPS)
    groups.add_index(INDEX_OWNER_CLUSTER, _by_cluster_name)
    groups.add_index(INDEX_OWNER_SERVICE, _by_service_name)
    pods = cached_fields.informer(manager, PODS, label_selector=POD_SELECTOR)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    drains = manager.informer(PODS, label_selector=f"{C.LABEL_NODE_TYPE}={W.NODE_TYPE_DRAIN}")
    drains.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    reconciler = RayWorkerGroupReconciler(
        manager.client,
        Store(clusters, groups, pods, drains, services),
        manager.events,
        own,
        settings.raycluster.build_options,
    )
    ctrl = manager.new_controller(
        "rayworkergroup", reconciler.reconcile, concurrency=settings.reconcile_concurrency
    )
    ctrl.watch_primary(clusters)
    ctrl.watch_map(groups, _owner_cluster, predicate=_generation_or_delete)
    by_cluster_label = _label_mapper(C.LABEL_CLUSTER)
    ctrl.watch_map(pods, by_cluster_label, predicate=_pod_changed)
    ctrl.watch_map(drains, by_cluster_label)
    # A RayService's groups, keyed by the RayService: its spec names the groups, its status the active
    # cluster (a promotion is a status change); that cluster, its Pods and drain Pods map back to it.
    svc = manager.new_controller(
        "rayservice-workergroup", reconciler.reconcile_service, concurrency=settings.reconcile_concurrency
    )
    svc.watch_primary(services, predicate=_active_or_spec_changed)
    svc.watch_map(groups, _owner_service, predicate=_generation_or_delete)
    svc.watch_map(clusters, _controlling_service)
    by_service = _service_of_cluster_label(clusters)
    svc.watch_map(pods, by_service, predicate=_pod_changed)
    svc.watch_map(drains, by_service)
    return ctrl


def _active_or_spec_changed(event: str, obj: Obj, old: Obj | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return meta(obj).get("generation") != meta(old).get("generation") or P.active_cluster(obj) != (
        P.active_cluster(old)
    )


def _owner_service(obj: Obj) -> list[Key]:
    owner = spec_of(obj).get("rayServiceName")
    return [(namespace_of(obj), owner)] if isinstance(owner, str) and owner else []


def _controlling_service(obj: Obj) -> list[Key]:
    ctl = controller_ref(obj)
    if ctl is None or ctl.get("kind") != C.KIND_RAYSERVICE or not ctl.get("name"):
        return []
    return [(namespace_of(obj), str(ctl["name"]))]


def _service_of_cluster_label(clusters: Cache) -> Callable[[Obj], list[Key]]:
    """A Pod (ray.io/cluster) -> the RayService controlling that RayCluster, if any."""

    def mapper(obj: Obj) -> list[Key]:
        name = labels_of(obj).get(C.LABEL_CLUSTER)
        rc = clusters.get(namespace_of(obj), str(name)) if name else None
        return _controlling_service(rc) if rc is not None else []

    return mapper


def _owner_cluster(obj: Obj) -> list[Key]:
    owner = spec_of(obj).get("rayClusterName")
    return [(namespace_of(obj), owner)] if isinstance(owner, str) and owner else []


def _label_mapper(label: str) -> Callable[[Obj], list[Key]]:
    def mapper(obj: Obj) -> list[Key]:
        value = labels_of(obj).get(label)
        return [(namespace_of(obj), str(value))] if value else []

    return mapper
