"""The RayService reconciler: observe, decide (rayservice_machine.decide, pure), act, then write status.

Per reconcile:
  1. read the RayService live from the API server (a stale cached status could name a pending cluster
     that no longer is, or miss one that is), and its RayClusters, head pods, Services and serve
     EndpointSlices from the shared caches;
  2. ask Ray: each active or pending head's dashboard for its Serve applications (once the head is
     ready), the heads' Serve proxies for `/-/healthz`, the pending cluster's serving pods when its
     applications run, and the Serve proxies of an old cluster past its deletion time for the requests
     still in flight;
  3. decide() returns the new status and ordered actions; run them in order (any API failure stops
     there and the key is retried with backoff, so the status never runs ahead of what happened; a
     refused Serve config PUT is reported and retried on the next pass);
  4. write the status (PUT /status with the resourceVersion read in 1) when it changed.

Every RayService is looked at again every 2 s, as KubeRay does: Serve applications change state without
any Kubernetes event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from rayop.api import constants as C
from rayop.api import servedeployment as SD
from rayop.api.kinds import RAYCLUSTERS, RAYSERVEDEPLOYMENTS, RAYSERVICES, RAYWORKERGROUPS
from rayop.base.names import random_suffix
from rayop.base.objects import (
    controller_ref,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    ref,
)
from rayop.base.types import Obj
from rayop.builders import cluster as cl
from rayop.builders import gateway as G
from rayop.builders import rayservice as B
from rayop.builders import servedeployment as SDB
from rayop.builders import workergroup as WG
from rayop.builders.rayjob import dashboard_url_from_service
from rayop.controllers import cached_fields
from rayop.controllers import rayservice_incremental as I
from rayop.controllers import rayservice_machine as M
from rayop.controllers import servedeployment_plan as SP
from rayop.controllers.common import (
    ACT_CREATE,
    ACT_UPDATE,
    INDEX_CLUSTER,
    NORMAL,
    POD_SELECTOR,
    WARNING,
    Writer,
    cluster_key,
    split_key,
)
from rayop.controllers.dashboards import Dashboards
from rayop.controllers.settings import ControllerSettings
from rayop.ray.dashboard import DashboardError
from rayop.ray.serve import PodEndpoints, pod_ip
from rayop.runtime.cache import index_by_label
from rayop.runtime.client import (
    ENDPOINTSLICES,
    GATEWAYS,
    HTTPROUTES,
    PODS,
    SERVICES,
    ApiClient,
    ApiError,
)
from rayop.runtime.controller import any_of, default_predicate, labels_changed
from rayop.runtime.protocols import Cache, ControllerHandle, Key, Manager, Recorder, Result

log = logging.getLogger("rayop.controllers.rayservice")

LABEL_SERVICE_NAME: Final = "kubernetes.io/service-name"
INDEX_SERVICE_NAME: Final = "service-name"
# Index of the RayServeDeployment cache: "<namespace>/<RayService>" of spec.rayServiceName.
INDEX_RAYSERVICE: Final = "rayservedeployment-service"
# The EndpointSlice controller copies a Service's labels onto its slices, so this selects the slices of the
# Services RayServices own and nothing else.
ENDPOINTSLICE_SELECTOR: Final = f"{C.LABEL_ORIGINATED_FROM_CRD}={C.KIND_RAYSERVICE}"
# How long a write of ours is preferred over a cache that has not shown it yet.
WRITTEN_TTL_SECONDS: Final = 30.0

# What the RayService controller needs from the API server (KubeRay's kubebuilder markers on
# rayservice_controller.go), for whoever renders the operator's ClusterRole.
RBAC_RULES: Final[tuple[Obj, ...]] = (
    {
        "apiGroups": [C.GROUP],
        "resources": ["rayservices"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {"apiGroups": [C.GROUP], "resources": ["rayservices/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": [C.GROUP], "resources": ["rayservices/finalizers"], "verbs": ["update"]},
    {
        "apiGroups": [C.GROUP],
        "resources": ["rayclusters"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    # With --use-kubernetes-proxy: Serve's state (GET) and config (PUT) through the head's Service, the
    # Serve proxies' health and metrics (GET) through their Pods.
    {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "update"]},
    {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # The incremental upgrade's Gateway and HTTPRoute: read at each pass, never watched or deleted (they
    # go with the RayService that owns them).
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["gateways", "httproutes"],
        "verbs": ["get", "create", "update"],
    },
    # Scale targets of Serve deployments (docs/scaling.md): created, deleted, spec.replicas patched when
    # serveConfigV2 or Serve's autoscaler changes it, status written.
    {
        "apiGroups": [SD.GROUP],
        "resources": [SD.PLURAL],
        "verbs": ["create", "delete", "get", "list", "watch", "patch"],
    },
    {"apiGroups": [SD.GROUP], "resources": [f"{SD.PLURAL}/status"], "verbs": ["update"]},
)


def slim_endpointslice(obj: Obj) -> Obj:
    """Keep what numServeEndpoints reads: the slice's owner Service and its endpoints' readiness and pods."""
    md = obj.get("metadata") or {}
    return {
        "metadata": {
            k: md[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences")
            if k in md
        },
        "endpoints": [
            {
                "conditions": {"ready": bool((e.get("conditions") or {}).get("ready"))},
                "targetRef": {"uid": str((e.get("targetRef") or {}).get("uid") or "")},
            }
            for e in obj.get("endpoints") or []
            if isinstance(e, dict)
        ],
    }


def ready_endpoints(slices: list[Obj]) -> int:
    """Distinct ready pods over a Service's EndpointSlices (a pod appears once per IP family)."""
    return len(
        {
            (e.get("targetRef") or {}).get("uid")
            for s in slices
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") and (e.get("targetRef") or {}).get("uid")
        }
    )


@dataclass
class Store:
    """The caches the reconciler reads (informers in production, fakes in unit tests)."""

    clusters: Cache
    pods: Cache
    services: Cache
    endpointslices: Cache
    worker_groups: Cache | None = None
    """RayWorkerGroups (None when the operator keeps none): the sizes a new cluster's groups start at."""
    targets: Cache | None = None
    """RayServeDeployments, indexed by INDEX_RAYSERVICE (None: scale targets are off)."""


@dataclass
class _Written:
    obj: Obj
    at: float


@dataclass
class Counters:
    """What this reconciler did, for tests and benchmarks."""

    reconciles: int = 0
    serve_puts: int = 0
    clusters_created: list[str] = field(default_factory=list)


class RayServiceReconciler:
    def __init__(
        self,
        client: ApiClient,
        store: Store,
        recorder: Recorder,
        dashboards: Dashboards,
        pods: PodEndpoints,
        config: M.RayServiceConfig,
        *,
        proxy_timeouts_before_down: int = 3,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        suffix: Callable[[], str] = random_suffix,
    ) -> None:
        self.client = client
        self.store = store
        self.w = Writer(client, recorder)
        self.dashboards = dashboards
        self.pods = pods
        self.cfg = config
        self.proxy_timeouts_before_down = proxy_timeouts_before_down
        self.now = now
        self.suffix = suffix
        self.counters = Counters()
        # Our own writes of RayClusters, until the cache shows them (see _cluster).
        self._written: dict[tuple[str, str], _Written] = {}
        # Head pod uid -> proxy checks in a row that got no answer.
        self._silent: dict[str, int] = {}

    async def reconcile(self, key: Key) -> Result:
        ns, name = split_key(key)
        self.counters.reconciles += 1
        rs = await self.client.get_or_none(RAYSERVICES, name, ns)
        if rs is None:
            return Result()
        world = await self.observe(rs)
        decision = I.decide(rs, world, self.cfg)
        written = await self.act(rs, decision)
        if written is None:
            return Result()
        if decision.status_changed:
            await self.w.write_status(RAYSERVICES, written, decision.status)
        if decision.requeue_after is not None:
            return Result(requeue_after=max(decision.requeue_after, 0.05))
        return Result()

    # -- observe ------------------------------------------------------------------------------------------

    def _cluster(self, ns: str, name: str) -> Obj | None:
        """The cached RayCluster, or what we last wrote to it while the cache has not caught up."""
        cached = self.store.clusters.get(ns, name)
        w = self._written.get((ns, name))
        if w is None:
            return cached
        if asyncio.get_running_loop().time() - w.at > WRITTEN_TTL_SECONDS or (
            cached is not None and _newer_or_same(cached, w.obj)
        ):
            del self._written[(ns, name)]
            return cached
        return w.obj

    def clusters_of(self, rs: Obj) -> dict[str, Obj]:
        ns = namespace_of(rs)
        names = {name_of(c) for c in self.store.clusters.list(ns, B.originated_labels(rs))}
        names.update(n for n in M.cluster_names(rs) if n)
        out: dict[str, Obj] = {}
        for n in sorted(names):
            c = self._cluster(ns, n)
            if c is not None:
                out[n] = c
        return out

    async def observe(self, rs: Obj) -> M.World:
        ns = namespace_of(rs)
        clusters = self.clusters_of(rs)
        active, pending = M.cluster_names(rs)
        deleting = is_terminating(rs)
        unused = set(M.unused_clusters(rs, clusters))
        now = self.now()

        # The incremental upgrade also reads each cluster's own serve Service, and the Gateway and HTTPRoute.
        incremental = I.enabled(rs, self.cfg) and not deleting

        async def one(name: str, c: Obj) -> M.ClusterObs:
            if deleting:
                return M.ClusterObs(cluster=c)
            if name in (active, pending):
                obs = await self.observe_cluster(rs, c, pending=name == pending or incremental)
                return self.with_cluster_service(obs) if incremental else obs
            due = M.delete_after(c)
            if name in unused and due is not None and now >= due and not is_terminating(c):
                return M.ClusterObs(cluster=c, ongoing_requests=await self.ongoing(c))
            return M.ClusterObs(cluster=c)

        names = sorted(clusters)
        gateway_objs = self.gateway_objects(rs) if incremental else _no_gateway()
        observed, (gateway, route) = await asyncio.gather(
            asyncio.gather(*(one(n, clusters[n]) for n in names)), gateway_objs
        )
        serve_name = B.serve_service_name(rs)
        by_name = dict(zip(names, observed, strict=True))
        return M.World(
            now=now,
            clusters=by_name,
            serve_targets=self.serve_targets(rs, by_name.get(active)),
            head_service=self.store.services.get(ns, B.head_service_name(rs)),
            serve_service=self.store.services.get(ns, serve_name),
            serve_endpoints=ready_endpoints(
                list(self.store.endpointslices.by_index(INDEX_SERVICE_NAME, f"{ns}/{serve_name}"))
            ),
            suffix=self.suffix(),
            gateway=gateway,
            httproute=route,
            group_sizes=self.group_sizes(rs),
        )

    def group_sizes(self, rs: Obj) -> dict[str, int]:
        if self.store.worker_groups is None:
            return {}
        return WG.service_group_sizes(
            rs, self.store.worker_groups.list(namespace_of(rs), B.originated_labels(rs))
        )

    def with_cluster_service(self, obs: M.ClusterObs) -> M.ClusterObs:
        ns, svc_name = namespace_of(obs.cluster), G.cluster_serve_service_name(name_of(obs.cluster))
        slices = list(self.store.endpointslices.by_index(INDEX_SERVICE_NAME, f"{ns}/{svc_name}"))
        return replace(
            obs, serve_service=self.store.services.get(ns, svc_name), serve_endpoints=ready_endpoints(slices)
        )

    async def gateway_objects(self, rs: Obj) -> tuple[Obj | None, Obj | None]:
        """The Gateway and HTTPRoute, read from the API server each pass (few, and never from a cache that
        could be behind a write of ours). A cluster without the Gateway API's CRDs answers 404: None."""
        ns = namespace_of(rs)
        gw, route = await asyncio.gather(
            self.client.get_or_none(GATEWAYS, G.gateway_name(rs), ns),
            self.client.get_or_none(HTTPROUTES, G.httproute_name(rs), ns),
        )
        return gw, route

    def serve_targets(self, rs: Obj, active: M.ClusterObs | None) -> dict[str, Obj]:
        """The RayServeDeployments naming this RayService, and whatever holds a name one of the active
        cluster's deployments would get (to tell a taken name from a missing object)."""
        cache = self.store.targets
        if cache is None:
            return {}
        ns, rs_name = namespace_of(rs), name_of(rs)
        out = {name_of(t): t for t in cache.by_index(INDEX_RAYSERVICE, f"{ns}/{rs_name}")}
        apps = active.serve.apps if active is not None and active.serve is not None else None
        for key in SDB.deployments_of(apps):
            name = SDB.target_name(rs_name, *key)
            if name and name not in out:
                found = cache.get(ns, name)
                if found is not None:
                    out[name] = found
        return out

    def cluster_pods(self, c: Obj) -> list[Obj]:
        return [
            p
            for p in self.store.pods.by_index(INDEX_CLUSTER, cluster_key(namespace_of(c), name_of(c)))
            if not is_terminating(p)
        ]

    async def observe_cluster(self, rs: Obj, c: Obj, *, pending: bool) -> M.ClusterObs:
        ns = namespace_of(c)
        pods = self.cluster_pods(c)
        head = B.pods_head(pods)
        head_obj = dict(head) if head is not None else None
        exclude = bool((rs.get("spec") or {}).get("excludeHeadPodFromServeSvc"))
        head_check = self.head_proxy(ns, head_obj) if head_obj is not None and not exclude else _none()
        lookup_task = self.serve_lookup(c) if M.head_ready(c) else _none_lookup()
        head_proxy, lookup = await asyncio.gather(head_check, lookup_task)
        serving = 0
        if pending and lookup is not None and M.apps_running(lookup.apps):
            serving = await self.serving_workers(ns, pods)
        groups = {name_of(p): str(labels_of(p).get(C.LABEL_GROUP) or "") for p in pods}
        ips = {pod_ip(p): name_of(p) for p in pods if pod_ip(p)}
        return M.ClusterObs(
            cluster=c,
            head_pod=head_obj,
            head_proxy=head_proxy,
            serve=lookup,
            serving_pods=serving,
            pod_groups=groups,
            pods_by_ip=ips,
        )

    async def head_proxy(self, ns: str, head: Obj) -> bool | None:
        ip = pod_ip(head)
        uid = str(meta(head).get("uid") or name_of(head))
        if not ip or (head.get("status") or {}).get("phase") != "Running":
            return None
        health = await self.pods.proxy_health(ns, name_of(head), ip, B.serve_port(head))
        if health.ok is not None:
            self._silent.pop(uid, None)
            return health.ok
        if len(self._silent) > 10_000:  # heads that went away while silent
            self._silent.clear()
        n = self._silent.get(uid, 0) + 1
        self._silent[uid] = n
        if n >= self.proxy_timeouts_before_down:
            log.info(
                "head %s/%s: Serve proxy silent %d times in a row: %s", ns, name_of(head), n, health.detail
            )
            return False
        return None

    async def serving_workers(self, ns: str, pods: list[Obj]) -> int:
        """1 when a Ready worker labelled ray.io/serve=true answers /-/healthz (asked in turn), else 0."""
        for p in pods:
            if labels_of(p).get(C.LABEL_NODE_TYPE) != C.NODE_TYPE_WORKER:
                continue
            if labels_of(p).get(C.LABEL_SERVE) != "true" or not M._pod_ready(p):
                continue
            ip = pod_ip(p)
            if ip and (await self.pods.proxy_health(ns, name_of(p), ip, B.serve_port(p))).ok:
                return 1
        return 0

    async def serve_lookup(self, c: Obj) -> M.ServeLookup | None:
        svc = self.store.services.get(namespace_of(c), cl.head_service_name(c))
        url = dashboard_url_from_service(svc or {}, self.cfg.build_options.cluster_domain)
        if not url:
            return None
        try:
            dash = await self.dashboards.client(url, c)
            try:
                details = await dash.get_serve_applications()
            finally:
                await dash.close()
        except (DashboardError, ApiError) as e:
            return M.ServeLookup(error=str(e))
        apps = details.get("applications")
        return M.ServeLookup(apps=dict(apps) if isinstance(apps, Mapping) else {})

    async def ongoing(self, c: Obj) -> int | None:
        """Requests in flight at an old cluster's Serve proxies; None when a running pod's count is unknown."""
        ns = namespace_of(c)
        running = [
            p for p in self.cluster_pods(c) if pod_ip(p) and (p.get("status") or {}).get("phase") == "Running"
        ]
        counts = await asyncio.gather(
            *(self.pods.ongoing_requests(ns, name_of(p), pod_ip(p), B.metrics_port(p)) for p in running)
        )
        if any(n is None for n in counts):
            return None
        return sum(n or 0 for n in counts)

    # -- act ----------------------------------------------------------------------------------------------------

    async def act(self, rs: Obj, d: M.Decision) -> Obj | None:
        """Run the actions in order; returns the RayService to write the status on (None: nothing to write)."""
        ns = namespace_of(rs)
        for a in d.actions:
            if isinstance(a, M.AddFinalizer):
                rs = await self.w.set_finalizers(
                    RAYSERVICES, rs, [*(meta(rs).get("finalizers") or []), C.FINALIZER_RAYSERVICE]
                )
            elif isinstance(a, M.RemoveFinalizer):
                fins = [f for f in meta(rs).get("finalizers") or [] if f != C.FINALIZER_RAYSERVICE]
                try:
                    await self.w.set_finalizers(RAYSERVICES, rs, fins)
                except ApiError as e:
                    if not e.not_found:
                        raise
                return None
            elif isinstance(a, M.CreateCluster):
                out = await self.w.create(
                    rs,
                    RAYCLUSTERS,
                    a.cluster,
                    what="RayCluster",
                    created=C.EV_CREATED_RAYCLUSTER,
                    failed=C.EV_FAILED_CREATE_RAYCLUSTER,
                )
                if out is not None:
                    self.counters.clusters_created.append(name_of(out))
                    self._remember(out)
            elif isinstance(a, M.UpdateCluster):
                await self._update_cluster(rs, a)
            elif isinstance(a, M.AnnotateCluster):
                await self._annotate(ns, a.name, a.annotations)
            elif isinstance(a, M.DeleteCluster):
                log.info("%s: deleting RayCluster %s: %s", ref(rs), a.name, a.why)
                await self.w.delete(
                    rs,
                    RAYCLUSTERS,
                    a.name,
                    what="RayCluster",
                    deleted=C.EV_DELETED_RAYCLUSTER,
                    failed=C.EV_FAILED_DELETE_RAYCLUSTER,
                    propagation="Background",
                )
                self._written.pop((ns, a.name), None)
            elif isinstance(a, M.SetServeLabel):
                await self._serve_label(rs, a)
            elif isinstance(a, M.ApplyServeConfig):
                await self._apply_serve(rs, a)
            elif isinstance(a, M.CreateService):
                await self.w.create(
                    rs,
                    SERVICES,
                    a.service,
                    what="service",
                    created=C.EV_CREATED_SERVICE,
                    failed=C.EV_FAILED_CREATE_SERVICE,
                )
            elif isinstance(a, M.SwitchService):
                await self._switch_service(rs, a)
            elif isinstance(a, M.CreateGateway | M.CreateHTTPRoute):
                await self._create_gateway_object(rs, a)
            elif isinstance(a, M.UpdateGateway | M.UpdateHTTPRoute):
                await self._update_gateway_object(rs, a)
            elif isinstance(a, M.DeleteService):
                await self.w.delete(
                    rs,
                    SERVICES,
                    a.name,
                    what="service",
                    deleted=C.EV_DELETED_SERVICE,
                    failed=C.EV_FAILED_DELETE_SERVICE,
                )
            elif isinstance(a, M.CreateServeDeployment):
                await self.w.create(
                    rs,
                    RAYSERVEDEPLOYMENTS,
                    a.target,
                    what=SD.KIND,
                    created=SD.EV_CREATED,
                    failed=SD.EV_FAILED_CREATE,
                )
            elif isinstance(a, M.DeleteServeDeployment):
                log.info("%s: deleting %s %s: %s", ref(rs), SD.KIND, a.name, a.why)
                await self.w.delete(
                    rs,
                    RAYSERVEDEPLOYMENTS,
                    a.name,
                    what=SD.KIND,
                    deleted=SD.EV_DELETED,
                    failed=SD.EV_FAILED_DELETE,
                )
            elif isinstance(a, M.UpdateServeDeployment):
                await self._update_target(a.update)
            elif isinstance(a, M.Event):
                self.w.event(rs, a.type, a.reason, ACT_UPDATE, a.message)
        return rs

    def _remember(self, obj: Obj) -> None:
        self._written[(namespace_of(obj), name_of(obj))] = _Written(obj, asyncio.get_running_loop().time())

    async def _update_cluster(self, rs: Obj, a: M.UpdateCluster) -> None:
        ns, name = namespace_of(a.cluster), name_of(a.cluster)
        try:
            out = await self.client.replace(RAYCLUSTERS, a.cluster)
        except ApiError as e:
            self.w.event(
                rs,
                WARNING,
                C.EV_FAILED_UPDATE_RAYCLUSTER,
                ACT_UPDATE,
                f"Failed to update the {a.role} RayCluster {ns}/{name}: {e.message}",
            )
            raise
        self._remember(out)
        self.w.event(
            rs, NORMAL, C.EV_UPDATED_RAYCLUSTER, ACT_UPDATE, f"Updated the {a.role} RayCluster {ns}/{name}"
        )

    async def _annotate(self, ns: str, name: str, annotations: Mapping[str, str | None]) -> None:
        try:
            out = await self.client.patch(
                RAYCLUSTERS, name, {"metadata": {"annotations": dict(annotations)}}, ns, patch_type="merge"
            )
        except ApiError as e:
            if e.not_found:
                return
            raise
        self._remember(out)

    async def _serve_label(self, rs: Obj, a: M.SetServeLabel) -> None:
        ns = namespace_of(rs)
        try:
            await self.client.patch(
                PODS, a.pod, {"metadata": {"labels": {C.LABEL_SERVE: a.value}}}, ns, patch_type="merge"
            )
        except ApiError as e:
            if e.not_found:
                return
            self.w.event(
                rs,
                WARNING,
                C.EV_FAILED_UPDATE_HEAD_POD_SERVE_LABEL,
                ACT_UPDATE,
                f'Failed to update the serve label to "{a.value}" for the Head Pod {ns}/{a.pod}: {e.message}',
            )
            raise
        self.w.event(
            rs,
            NORMAL,
            C.EV_UPDATED_HEAD_POD_SERVE_LABEL,
            ACT_UPDATE,
            f'Updated the serve label to "{a.value}" for the Head Pod {ns}/{a.pod}',
        )

    async def _apply_serve(self, rs: Obj, a: M.ApplyServeConfig) -> None:
        """PUT the config, then record it on the cluster. A refusal is an event, not a failed reconcile:
        the status must still say what Ray reports, and the next pass tries again."""
        ns = namespace_of(rs)
        c = self._cluster(ns, a.cluster)
        svc = self.store.services.get(ns, cl.head_service_name(c or {"metadata": {"name": a.cluster}}))
        url = dashboard_url_from_service(svc or {}, self.cfg.build_options.cluster_domain)
        try:
            if not url:
                raise DashboardError(
                    "PUT", "", None, "", f"the head Service of {a.cluster} has no dashboard port"
                )
            dash = await self.dashboards.client(url, c)
            try:
                await dash.put_serve_applications(a.config)
            finally:
                await dash.close()
        except (DashboardError, ApiError) as e:
            if a.capacity_change:
                reason, what = C.EV_FAILED_UPDATE_TARGET_CAPACITY, "target_capacity of serve applications"
            else:
                reason, what = C.EV_FAILED_UPDATE_SERVE_APPLICATIONS, "serve applications"
            self.w.event(
                rs,
                WARNING,
                reason,
                ACT_UPDATE,
                f"Failed to update {what} to the RayCluster {ns}/{a.cluster}: {e}",
            )
            return
        self.counters.serve_puts += 1
        capacity = a.config.get("target_capacity")
        log.info(
            "%s: applied the Serve config to RayCluster %s%s",
            ref(rs),
            a.cluster,
            f" (target_capacity {capacity})" if capacity is not None else "",
        )
        await self._annotate(ns, a.cluster, {**a.record, C.ANN_SERVE_CONFIG_HASH: a.config_hash})
        if a.capacity_change:
            self.w.event(
                rs,
                NORMAL,
                C.EV_UPDATED_SERVE_TARGET_CAPACITY,
                ACT_UPDATE,
                f"Updated target_capacity of serve applications to {capacity} on the RayCluster {ns}/{a.cluster}",
            )
            return
        self.w.event(
            rs,
            NORMAL,
            C.EV_UPDATED_SERVE_APPLICATIONS,
            ACT_UPDATE,
            f"Updated serve applications to the RayCluster {ns}/{a.cluster}",
        )

    async def _update_target(self, u: SP.TargetUpdate) -> None:
        """spec.replicas first (guarded by the resourceVersion read), then the status on what that
        returned. A conflict (an HPA wrote meanwhile) leaves both to the next pass, so a number copied from
        serveConfigV2 is never recorded as followed without being written."""
        t = u.target
        if u.replicas is not None:
            patch = {
                "metadata": {"resourceVersion": meta(t).get("resourceVersion")},
                "spec": {"replicas": u.replicas},
            }
            try:
                t = await self.client.patch(RAYSERVEDEPLOYMENTS, name_of(t), patch, namespace_of(t))
            except ApiError as e:
                if e.conflict or e.not_found:
                    return
                raise
        for n in u.notes:
            self.w.event(t, n.type, n.reason, ACT_UPDATE, n.message)
        status = dict(u.status)
        if u.observe:
            status["observedGeneration"] = meta(t).get("generation") or 0
        if status == dict(t.get("status") or {}):
            return
        try:
            await self.w.write_status(RAYSERVEDEPLOYMENTS, t, status)
        except ApiError as e:
            if not (e.conflict or e.not_found):
                raise

    async def _switch_service(self, rs: Obj, a: M.SwitchService) -> None:
        ns = namespace_of(rs)
        have = self.store.services.get(ns, a.name)
        if have is None:
            return
        body = dict(have)
        body["spec"] = a.spec
        try:
            await self.client.replace(SERVICES, body)
        except ApiError as e:
            self.w.event(
                rs,
                WARNING,
                C.EV_FAILED_UPDATE_SERVICE,
                ACT_UPDATE,
                f"Failed to update the service {ns}/{a.name}, {e.message}",
            )
            raise
        log.info("%s: service %s now points at RayCluster %s", ref(rs), a.name, a.cluster)
        self.w.event(rs, NORMAL, C.EV_UPDATED_SERVICE, ACT_UPDATE, f"Updated the service {ns}/{a.name}")

    async def _create_gateway_object(self, rs: Obj, a: M.CreateGateway | M.CreateHTTPRoute) -> None:
        obj, res, kind = (
            (a.gateway, GATEWAYS, "Gateway")
            if isinstance(a, M.CreateGateway)
            else (a.route, HTTPROUTES, "HTTPRoute")
        )
        created, failed = (
            (C.EV_CREATED_GATEWAY, C.EV_FAILED_CREATE_GATEWAY)
            if kind == "Gateway"
            else (C.EV_CREATED_HTTPROUTE, C.EV_FAILED_CREATE_HTTPROUTE)
        )
        ns = namespace_of(rs)
        try:
            await self.client.create(res, obj, ns)
        except ApiError as e:
            if e.already_exists:
                return
            why = e.message
            if e.not_found:
                why = f"the Gateway API CRDs ({G.API_VERSION}) are not installed: {why}"
            self.w.event(
                rs, WARNING, failed, ACT_CREATE, f"Failed to create the {kind} {ns}/{name_of(obj)}: {why}"
            )
            raise
        log.info("%s: created %s %s", ref(rs), kind, name_of(obj))
        self.w.event(rs, NORMAL, created, ACT_CREATE, f"Created the {kind} {ns}/{name_of(obj)}")

    async def _update_gateway_object(self, rs: Obj, a: M.UpdateGateway | M.UpdateHTTPRoute) -> None:
        if isinstance(a, M.UpdateGateway):
            obj, res, kind, why = a.gateway, GATEWAYS, "Gateway", ""
            updated, failed = C.EV_UPDATED_GATEWAY, C.EV_FAILED_UPDATE_GATEWAY
        else:
            obj, res, kind, why = a.route, HTTPROUTES, "HTTPRoute", a.why
            updated, failed = C.EV_UPDATED_HTTPROUTE, C.EV_FAILED_UPDATE_HTTPROUTE
        ns = namespace_of(rs)
        try:
            await self.client.replace(res, obj)
        except ApiError as e:
            self.w.event(
                rs,
                WARNING,
                failed,
                ACT_UPDATE,
                f"Failed to update the {kind} {ns}/{name_of(obj)}: {e.message}",
            )
            raise
        log.info("%s: updated %s %s%s", ref(rs), kind, name_of(obj), f": {why}" if why else "")
        self.w.event(
            rs,
            NORMAL,
            updated,
            ACT_UPDATE,
            f"Updated the {kind} {ns}/{name_of(obj)}" + (f" ({why})" if why else ""),
        )


def _newer_or_same(cached: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """Whether the cache has caught up with our write (resourceVersions compare as numbers in practice; if
    they do not parse, only equality counts)."""
    a, b = str(meta(cached).get("resourceVersion") or ""), str(meta(written).get("resourceVersion") or "")
    if a == b:
        return True
    try:
        return int(a) > int(b)
    except ValueError:
        return False


async def _none() -> None:
    return None


async def _none_lookup() -> M.ServeLookup | None:
    return None


async def _no_gateway() -> tuple[Obj | None, Obj | None]:
    return None, None


# Wiring ----------------------------------------------------------------------------------------------------


def _owner_rayservice(cache: Cache) -> Callable[[Obj], list[Key]]:
    """Pod → its RayCluster (ray.io/cluster) → the RayService controlling that cluster."""

    def mapper(obj: Obj) -> list[Key]:
        ns = namespace_of(obj)
        cluster_name = labels_of(obj).get(C.LABEL_CLUSTER)
        c = cache.get(ns, str(cluster_name)) if cluster_name else None
        owner = controller_ref(c) if c is not None else None
        if owner is None or owner.get("kind") != C.KIND_RAYSERVICE:
            return []
        return [(ns, str(owner.get("name")))]

    return mapper


def _service_owner(services: Cache, clusters: Cache) -> Callable[[Obj], list[Key]]:
    """EndpointSlice → its Service → the RayService owning that Service (or owning the RayCluster that
    owns it: the incremental upgrade's `<cluster>-serve-svc`)."""

    def mapper(obj: Obj) -> list[Key]:
        ns = namespace_of(obj)
        svc_name = labels_of(obj).get(LABEL_SERVICE_NAME)
        svc = services.get(ns, str(svc_name)) if svc_name else None
        owner = controller_ref(svc) if svc is not None else None
        if owner is not None and owner.get("kind") == C.KIND_RAYCLUSTER:
            c = clusters.get(ns, str(owner.get("name")))
            owner = controller_ref(c) if c is not None else None
        if owner is None or owner.get("kind") != C.KIND_RAYSERVICE:
            return []
        return [(ns, str(owner.get("name")))]

    return mapper


def _pod_serving_changed(event: str, obj: Obj, old: Obj | None) -> bool:
    """Pod events that can change what a RayService decides: readiness, phase, IP, labels, deletion."""
    if event != "MODIFIED" or old is None:
        return True

    def key(p: Obj) -> tuple[Any, ...]:
        st = p.get("status") or {}
        ready = next((c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
        return (st.get("phase"), st.get("podIP"), ready, bool(meta(p).get("deletionTimestamp")))

    return key(obj) != key(old) or labels_changed(event, obj, old)


def setup(manager: Manager, settings: ControllerSettings) -> ControllerHandle:
    """Register the RayService controller, its caches and (when enabled) its metrics on `manager`."""
    own = settings.rayservice
    rayservices = cached_fields.informer(manager, RAYSERVICES)
    clusters = cached_fields.informer(manager, RAYCLUSTERS)
    pods = cached_fields.informer(manager, PODS, label_selector=POD_SELECTOR)
    pods.add_index(INDEX_CLUSTER, index_by_label(C.LABEL_CLUSTER))
    services = cached_fields.informer(manager, SERVICES)
    slices = manager.informer(
        ENDPOINTSLICES, label_selector=ENDPOINTSLICE_SELECTOR, transform=slim_endpointslice
    )
    slices.add_index(INDEX_SERVICE_NAME, index_by_label(LABEL_SERVICE_NAME))
    targets = None
    if own.machine.serve_deployment_targets:
        targets = cached_fields.informer(manager, RAYSERVEDEPLOYMENTS)
        targets.add_index(INDEX_RAYSERVICE, _by_rayservice_name)
    dashboards = Dashboards(
        manager.client, use_proxy=own.use_kubernetes_proxy, resolve=own.dashboard_resolver
    )
    endpoints = PodEndpoints(manager.client, use_proxy=own.use_kubernetes_proxy, resolve=own.pod_resolver)
    # The same cache the RayWorkerGroup controller keeps (rayop.controllers.rayworkergroup).
    groups = cached_fields.informer(manager, RAYWORKERGROUPS) if settings.workergroups.enabled else None
    reconciler = RayServiceReconciler(
        manager.client,
        Store(clusters, pods, services, slices, groups, targets),
        manager.events,
        dashboards,
        endpoints,
        own.machine,
        proxy_timeouts_before_down=own.proxy_timeouts_before_down,
    )
    if settings.enable_metrics:
        from rayop.controllers import rayservice_metrics

        rayservice_metrics.register(rayservices)
    ctrl = manager.new_controller(
        "rayservice", reconciler.reconcile, concurrency=settings.reconcile_concurrency
    )
    ctrl.watch_primary(rayservices, predicate=default_predicate)
    for inf in (clusters, services):
        ctrl.watch_owned(inf, C.KIND_RAYSERVICE, owner_group=C.GROUP)
    ctrl.watch_map(pods, _owner_rayservice(clusters), predicate=any_of(_pod_serving_changed))
    ctrl.watch_map(slices, _service_owner(services, clusters))
    if targets is not None:
        # An HPA's or kubectl's write to /scale: fold the new number in on the next pass, not in 2 s.
        ctrl.watch_map(targets, _target_rayservice, predicate=_generation_or_delete)
    manager.add_runnable("rayservice-pod-endpoints", _closer(endpoints), needs_leader=False)
    return ctrl


def _by_rayservice_name(obj: Obj) -> list[str]:
    owner = (obj.get("spec") or {}).get("rayServiceName")
    return [f"{namespace_of(obj)}/{owner}"] if isinstance(owner, str) and owner else []


def _target_rayservice(obj: Obj) -> list[Key]:
    owner = (obj.get("spec") or {}).get("rayServiceName")
    return [(namespace_of(obj), owner)] if isinstance(owner, str) and owner else []


def _generation_or_delete(event: str, obj: Obj, old: Obj | None) -> bool:
    if event != "MODIFIED" or old is None:
        return True
    return meta(obj).get("generation") != meta(old).get("generation")


def _closer(endpoints: PodEndpoints) -> Callable[[], Any]:
    async def run() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await endpoints.close()

    return run


__all__ = ["RBAC_RULES", "RayServiceReconciler", "Store", "setup"]
