"""The incremental upgrade (`upgradeStrategy.type: NewClusterWithIncrementalUpgrade`, feature gate
`RayServiceIncrementalUpgrade`) as part of the pure RayService machine.

`IncrementalStep` replaces how the machine (rayservice_machine.py) upgrades and serves: instead of
switching the Services to a new cluster once it is ready, traffic moves in steps through an HTTPRoute of
the RayService's Gateway while the new cluster's Serve `target_capacity` rises and the old one's falls
(rayservice_steps.py decides each step). KubeRay's behaviour (`ray-operator/controllers/ray/
rayservice_controller.go`, `utils/util.go`):

- a Gateway `<rs>-gateway` (listener `http`, port 80, the spec's `gatewayClassName`) and, once a cluster
  is active, an HTTPRoute `<rs>-httproute` (prefix `/`) with a weighted backend per cluster: that
  cluster's serve Service `<cluster>-serve-svc`, owned by the RayCluster;
- the Serve config PUT with `target_capacity`: 100 for a RayService's first cluster, 0 for the new
  cluster of an upgrade, which starts with its worker groups' `replicas` unset;
- the loop waits for the Gateway (Accepted, Programmed) and the HTTPRoute (Accepted, ResolvedRefs), then
  moves capacity by `maxSurgePercent` and, every `intervalSeconds`, traffic by `stepSizePercent`; the new
  cluster is promoted once the old one's capacity is 0 and the new one gets all the traffic;
- rollback: a spec changed back to the active cluster's (or to a third spec) moves traffic and capacity
  back the same way (condition RollbackInProgress, reason DesiredClusterSpecChanged); once done the new
  cluster is dropped and, for a third spec, a new upgrade starts; a spec changed to the new cluster's again
  cancels the rollback.

What rayop adds, on purpose:

- Restart-safe: every input of a decision is on the API server, read at each pass. The capacity applied
  to a cluster and the config text it runs are recorded on the RayCluster (`rayop.io/target-capacity`,
  `rayop.io/serve-config`, beside `rayop.io/serve-config-hash`) after Ray accepted them; the weights and
  when they last changed (`rayop.io/traffic-migrated-at`) are on the HTTPRoute, written together; whether
  a rollback runs follows from the spec hashes on the clusters. KubeRay keeps the configs in memory, so
  after a restart during a rollback it sent the RayService's newer config to the active cluster (KubeRay
  issue #4717). Here the active cluster's capacity changes re-send the text recorded on it, and nothing
  else reaches it while an upgrade or rollback runs.
- One change per pass: a capacity change and the traffic it allows are never written together, so the
  weights move only after Ray accepted the capacity.
- The HTTPRoute counts as ready only when the Gateway reported on its current generation, so a capacity
  is lowered only after the implementation took the weights that made it possible.
- A cluster whose head is not ready counts as having no capacity to give up, so neither an upgrade nor a
  rollback waits on a broken cluster (KubeRay does this for the rollback's new cluster).

The traffic split itself is done by the user's Gateway implementation; rayop writes the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rayop.api import constants as C
from rayop.api import features
from rayop.base.objects import annotations_of, clone, is_terminating, meta, name_of, spec_of
from rayop.base.times import format_micro_time, format_time, parse_time
from rayop.base.types import Obj
from rayop.builders import gateway as G
from rayop.builders import rayservice as B
from rayop.controllers import rayservice_machine as M
from rayop.controllers import rayservice_steps as S
from rayop.validation._parse import parse_go_atoi


def enabled(rayservice: Mapping[str, Any], config: M.RayServiceConfig) -> bool:
    """utils.IsIncrementalUpgradeEnabled: the gate is on and the RayService asks for this strategy."""
    utype = (spec_of(rayservice).get("upgradeStrategy") or {}).get("type")
    return bool(config.gates.get(features.RAY_SERVICE_INCREMENTAL_UPGRADE, True)) and (
        utype == C.UPGRADE_NEW_CLUSTER_INCREMENTAL
    )


def options(rayservice: Mapping[str, Any]) -> S.Options:
    """`clusterUpgradeOptions` (validation has checked them; a missing number reads as 0, which waits)."""
    o = (spec_of(rayservice).get("upgradeStrategy") or {}).get("clusterUpgradeOptions") or {}

    def num(key: str, default: int) -> int:
        v = o.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else default

    return S.Options(
        step_percent=num("stepSizePercent", 0),
        interval_seconds=num("intervalSeconds", 0),
        max_surge_percent=num("maxSurgePercent", 100),
    )


def recorded_capacity(cluster: Mapping[str, Any]) -> int | None:
    n = parse_go_atoi(str(annotations_of(cluster).get(C.ANN_TARGET_CAPACITY) or ""))
    return n if n is not None and 0 <= n <= 100 else None


def recorded_text(cluster: Mapping[str, Any]) -> str | None:
    v = annotations_of(cluster).get(C.ANN_SERVE_CONFIG)
    return str(v) if isinstance(v, str) else None


@dataclass
class Serving:
    """One cluster's Serve as this pass finds it."""

    name: str
    cluster: Obj
    text: str | None
    """The serveConfigV2 it should run: the RayService's, or (the active cluster while an upgrade or a
    rollback runs) the one recorded on it; None: unknown, so nothing is sent to it."""
    capacity: int
    """The target_capacity Ray accepted (recorded), else the one it starts with."""
    apps: Obj | None
    """Application statuses, None when Ray could not be asked."""
    reachable: bool
    needs_put: bool
    ready: bool
    """All applications RUNNING with this config and a Serve proxy answering."""

    @property
    def head_down(self) -> bool:
        return not M.head_ready(self.cluster)


class IncrementalStep(M._Step):
    """The machine's step with the incremental strategy (see the module docstring)."""

    def upgrade(self) -> None:
        self.opts = options(self.rs)
        self.blocked: list[str] = []
        self.now_micro = format_micro_time(self.now)
        self.route_after: Obj | None = None
        active, pending = self.reconcile_clusters()
        self.serve_labels()
        a_name, p_name = self.active_name, self.pending_name
        a_live = active is not None and self.obs(a_name) is not None
        p_live = pending is not None and self.obs(p_name) is not None
        forward = pending is not None and (
            M.same_spec(self.rs, pending) or M.groups_appended(self.rs, pending)
        )
        upgrading = a_live and pending is not None
        rolling_back = upgrading and not forward

        a = p = None
        if active is not None and a_live:
            a = self.serving(a_name, active, role="active", upgrading=pending is not None)
        if pending is not None and p_live:
            p = self.serving(
                p_name, pending, role="pending", upgrading=active is not None, frozen=not forward
            )
        if self.active_name and not a_live and pending is not None and not forward:
            self.event(
                "Warning",
                C.EV_ROLLBACK_IMPOSSIBLE,
                f"The active RayCluster {self.ref(a_name)} no longer exists, so the upgrade cannot be rolled "
                f"back; traffic moves to the pending RayCluster {self.ref(p_name)} and a new upgrade follows.",
            )
        self.per_cluster_services([x for x in (a, p) if x is not None])
        self.gateway()

        new_caps: dict[str, int] = {}
        weights: tuple[int, int] | None = None  # (active, pending) after this pass
        promote = drop_pending = False
        route = self.world.httproute
        gw_problem = G.gateway_problem(self.world.gateway)
        route_problem = G.route_problem(route, G.gateway_name(self.rs))
        if gw_problem:
            self.blocked.append(f"Gateway {G.gateway_name(self.rs)}: {gw_problem}")
        elif route is not None and route_problem:
            self.blocked.append(f"HTTPRoute {G.httproute_name(self.rs)}: {route_problem}")
        if a is not None and p is not None:
            a_w = G.route_weight(route, G.cluster_serve_service_name(a.name))
            p_w = G.route_weight(route, G.cluster_serve_service_name(p.name)) or 0
            if a_w is None:
                a_w = 100 - p_w
            to, frm = (p, a) if forward else (a, p)
            split = S.Split(
                to_capacity=to.capacity,
                # A cluster whose head is down cannot give up capacity, and need not.
                from_capacity=0 if frm.head_down else frm.capacity,
                to_traffic=p_w if forward else a_w,
                last_moved=parse_time(G.migrated_at(route)),
            )
            to_ready = to.ready and self.can_serve(to.name)
            move = S.next_move(
                split,
                self.opts,
                self.now,
                to_ready=to_ready,
                routes_ready=not gw_problem and not route_problem,
            )
            if move.kind in (S.RAISE_TO, S.LOWER_FROM) and (to.needs_put or frm.needs_put):
                # A capacity moves only from the one Ray has: a config still to apply goes first (the new
                # cluster's first PUT is at target_capacity 0).
                move = S.Move(S.WAIT, split, why="a Serve config is being applied")
            if move.kind == S.DONE:
                promote, drop_pending = forward, not forward
            elif move.kind == S.RAISE_TO:
                new_caps[to.name] = move.split.to_capacity
            elif move.kind == S.LOWER_FROM:
                new_caps[frm.name] = move.split.from_capacity
            elif move.kind == S.SHIFT:
                to_w = move.split.to_traffic
                weights = (100 - to_w, to_w) if forward else (to_w, 100 - to_w)
            elif move.kind == S.WAIT:
                if move.wait_seconds is not None:
                    self.requeue_within(move.wait_seconds + 0.05)
                elif gw_problem or route_problem:
                    pass  # already said above
                elif not to_ready and split.to_traffic < split.to_capacity:
                    self.blocked.append(self.not_ready_reason(to))
                else:
                    self.blocked.append(move.why)
            if weights is None and not (promote or drop_pending):
                weights = (a_w, p_w)
        elif p is not None and not a_live:
            # The RayService's first cluster (or the active one is gone): it takes all the traffic.
            if p.capacity != 100:
                new_caps[p.name] = 100
            elif p.ready and self.can_serve(p.name):
                promote = True
            else:
                self.blocked.append(self.not_ready_reason(p))

        for x in (a, p):
            if x is not None:
                self.apply_serve(x, new_caps.get(x.name))

        # Promotion or the end of a rollback, then the route and the RayService's head Service.
        final_active = p if promote else a
        final_pending = None if (promote or drop_pending) else p
        if final_active is not None:
            backends = [
                G.Backend(
                    G.cluster_serve_service_name(final_active.name), G.serve_port(final_active.cluster), 100
                )
            ]
            if final_pending is not None and weights is not None:
                backends = [
                    G.Backend(backends[0].service, backends[0].port, weights[0]),
                    G.Backend(
                        G.cluster_serve_service_name(final_pending.name),
                        G.serve_port(final_pending.cluster),
                        weights[1],
                    ),
                ]
            self.route(backends)
            self.head_services(final_active)
        self.incremental_status(
            active, pending, a, p, promote=promote, drop_pending=drop_pending, rolling_back=rolling_back
        )

    # -- clusters -------------------------------------------------------------------------------------------

    def reconcile_clusters(self) -> tuple[Obj | None, Obj | None]:
        a = self.obs(self.active_name)
        p = self.obs(self.pending_name)
        active = a.cluster if a is not None else None
        pending = p.cluster if p is not None else None
        if self.pending_name and pending is None:
            if active is not None and M.same_spec(self.rs, active):
                # Back to the active cluster's spec before the new cluster was even created: nothing to roll
                # back (KubeRay made a second cluster of the same spec here until v1.7).
                self.st["pendingServiceStatus"] = {}
                return active, None
            pending = B.build_cluster(
                self.rs,
                self.pending_name,
                kuberay_version=self.cfg.kuberay_version,
                unset_replicas=bool(self.active_name),
            )
            self.actions.append(M.CreateCluster(pending))
            return active, pending
        if active is not None and self.should_update(active, active=True):
            active = B.updated_cluster(active, self.rs, kuberay_version=self.cfg.kuberay_version)
            self.actions.append(M.UpdateCluster(active, "active"))
            return active, pending
        if pending is not None and self.should_update(pending, active=False):
            pending = B.updated_cluster(pending, self.rs, kuberay_version=self.cfg.kuberay_version)
            self.actions.append(M.UpdateCluster(pending, "pending"))
        return active, pending

    def can_serve(self, name: str) -> bool:
        """A Serve proxy of the cluster answers: a Ready pod labelled `ray.io/serve=true`, or its head."""
        o = self.obs(name)
        return o is not None and (o.serving_pods > 0 or M.head_can_serve(o, self.exclude_head))

    def not_ready_reason(self, s: Serving) -> str:
        if s.ready:
            return f"no Serve proxy of RayCluster {s.name} answers /-/healthz yet"
        return f"RayCluster {s.name}: " + self.waiting_reason(s.name, s.cluster, s.apps)

    # -- Serve ----------------------------------------------------------------------------------------------

    def serving(
        self, name: str, cluster: Obj, *, role: str, upgrading: bool, frozen: bool = False
    ) -> Serving:
        spec_text = str(self.spec.get("serveConfigV2") or "")
        if role == "pending":
            # A new cluster being rolled back keeps what it runs: the RayService's config now goes with
            # another cluster spec.
            text: str | None = recorded_text(cluster) if frozen else spec_text
            start = 0 if upgrading else 100
        else:
            # The active cluster gets the RayService's config only while no upgrade runs or is due.
            frozen = upgrading or self.needs_new_cluster(cluster, None)
            text = recorded_text(cluster) if frozen else spec_text
            start = 100
        cap = recorded_capacity(cluster)
        capacity = start if cap is None else cap
        o = self.obs(name)
        reachable = o is not None and M.head_ready(cluster) and o.serve is not None and not o.serve.error
        apps = dict(o.serve.apps or {}) if reachable and o is not None and o.serve is not None else None
        have = annotations_of(cluster).get(C.ANN_SERVE_CONFIG_HASH)
        needs_put = bool(
            reachable
            and text is not None
            and text.strip()
            and (have != B.serve_config_hash(text, capacity) or not apps)
        )
        ready = reachable and not needs_put and M.apps_running(apps)
        return Serving(
            name,
            cluster,
            text,
            capacity,
            M.app_statuses(apps) if apps is not None else None,
            reachable,
            needs_put,
            ready,
        )

    def apply_serve(self, s: Serving, new_capacity: int | None) -> None:
        """PUT the config with its target_capacity when Ray does not have it yet (or a new capacity)."""
        capacity = s.capacity if new_capacity is None else new_capacity
        if s.text is None:
            if new_capacity is not None and new_capacity != s.capacity:
                # No record of what it runs: its capacity cannot change without sending it another config.
                self.actions.append(M.AnnotateCluster(s.name, {C.ANN_TARGET_CAPACITY: str(capacity)}))
                self.event(
                    "Warning",
                    C.EV_FAILED_UPDATE_TARGET_CAPACITY,
                    f"Cannot set target_capacity {capacity} on RayCluster {self.ref(s.name)}: the Serve config "
                    "it runs was deployed before rayop recorded it; its Serve replicas stay until it is deleted.",
                )
            return
        want = B.serve_config_hash(s.text, capacity)
        have = annotations_of(s.cluster).get(C.ANN_SERVE_CONFIG_HASH)
        if not s.reachable or not s.text.strip() or (want == have and s.apps):
            return
        try:
            config = B.serve_config(s.text, capacity)
        except B.ServeConfigError as e:
            self.event("Warning", C.EV_FAILED_UPDATE_SERVE_APPLICATIONS, str(e))
            return
        self.actions.append(
            M.ApplyServeConfig(
                s.name,
                config,
                want,
                record={C.ANN_SERVE_CONFIG: s.text, C.ANN_TARGET_CAPACITY: str(capacity)},
                capacity_change=bool(s.apps)
                and recorded_text(s.cluster) == s.text
                and capacity != s.capacity,
            )
        )

    # -- Gateway API objects and Services --------------------------------------------------------------------

    def per_cluster_services(self, clusters: list[Serving]) -> None:
        for s in clusters:
            o = self.obs(s.name)
            if (
                o is None
                or o.serve_service is not None
                or is_terminating(s.cluster)
                or not meta(s.cluster).get("uid")
            ):
                continue
            try:
                svc = G.build_cluster_serve_service(self.rs, s.cluster)
            except B.ServeConfigError as e:
                self.event("Warning", C.EV_FAILED_CREATE_SERVICE, str(e))
                continue
            self.actions.append(M.CreateService(svc))

    def gateway(self) -> None:
        want = G.build_gateway(self.rs)
        have = self.world.gateway
        if have is None:
            self.actions.append(M.CreateGateway(want))
        elif not is_terminating(have) and not G.gateway_matches(have, want):
            self.actions.append(M.UpdateGateway(G.updated_gateway(have, want)))

    def route(self, backends: list[G.Backend]) -> None:
        have = self.world.httproute
        changed = have is None or G.route_backends(have) != [
            G.Backend(b.service, b.port, b.weight) for b in backends
        ]
        stamp = self.now_micro if changed or not G.migrated_at(have) else G.migrated_at(have)
        want = G.build_httproute(self.rs, backends, stamp)
        self.route_after = want
        if have is None:
            self.actions.append(M.CreateHTTPRoute(want))
        elif is_terminating(have):
            return
        elif not G.route_matches(have, want):
            split = ", ".join(f"{b.service} {b.weight}%" for b in backends)
            self.actions.append(M.UpdateHTTPRoute(G.updated_route(have, want), split))

    def head_services(self, target: Serving) -> None:
        """`<rs>-head-svc` (and `<rs>-serve-svc` if one exists from another strategy) follow the active
        cluster; serving traffic goes through the Gateway."""
        want_head = B.build_head_service_for(self.rs, target.cluster, self.cfg.build_options)
        have_head = self.world.head_service
        if have_head is None:
            if meta(target.cluster).get("uid"):
                self.actions.append(M.CreateService(want_head))
        elif not is_terminating(have_head) and B.service_cluster(have_head) != target.name:
            self.actions.append(
                M.SwitchService(
                    name_of(want_head), B.switched_service_spec(have_head, want_head), target.name
                )
            )
        have_serve = self.world.serve_service
        if (
            have_serve is not None
            and not is_terminating(have_serve)
            and B.service_cluster(have_serve) != target.name
        ):
            try:
                want_serve = B.build_serve_service(self.rs, target.cluster)
            except B.ServeConfigError:
                return
            self.actions.append(
                M.SwitchService(
                    name_of(want_serve), B.switched_service_spec(have_serve, want_serve), target.name
                )
            )

    # -- status ---------------------------------------------------------------------------------------------

    def incremental_status(
        self,
        active: Mapping[str, Any] | None,
        pending: Mapping[str, Any] | None,
        a: Serving | None,
        p: Serving | None,
        *,
        promote: bool,
        drop_pending: bool,
        rolling_back: bool,
    ) -> None:
        if self.generation is not None:
            self.st["observedGeneration"] = self.generation
        route = self.route_after or self.world.httproute
        moved = parse_time(G.migrated_at(route))
        for key, cluster, s in (("activeServiceStatus", active, a), ("pendingServiceStatus", pending, p)):
            sec = self.section(key)
            sec["rayClusterStatus"] = clone(dict(cluster.get("status") or {})) if cluster is not None else {}
            if s is not None and s.apps is not None:
                sec["applicationStatuses"] = s.apps
                if not s.apps:
                    sec.pop("applicationStatuses")
            elif cluster is None:
                sec.pop("applicationStatuses", None)
            if s is not None:
                sec["targetCapacity"] = s.capacity
                weight = G.route_weight(route, G.cluster_serve_service_name(s.name)) if route else None
                if weight is not None:
                    sec["trafficRoutedPercent"] = weight
                    if moved is not None:
                        sec["lastTrafficMigratedTime"] = format_time(moved)
            elif key == "pendingServiceStatus" and self.pending_name:
                sec["targetCapacity"] = 0 if self.active_name else 100
        if promote:
            self.st["activeServiceStatus"] = self.st["pendingServiceStatus"]
            self.st["pendingServiceStatus"] = {}
            active, pending = pending, None
        elif drop_pending:
            self.st["pendingServiceStatus"] = {}
            pending = None
        if pending is None and self.needs_new_cluster(active, None):
            self.st["pendingServiceStatus"] = {
                "rayClusterName": B.cluster_name(self.rs, self.world.suffix),
                "targetCapacity": 0 if active is not None else 100,
            }
        self.st["numServeEndpoints"] = sum(
            o.serve_endpoints
            for o in (self.obs(self.active_name), self.obs(self.pending_name))
            if o is not None
        )
        if rolling_back and not drop_pending:
            back_to = self.active_name
            third = active is not None and not M.same_spec(self.rs, active)
            self.cond(
                C.COND_RS_ROLLBACK_IN_PROGRESS,
                "True",
                C.RS_REASON_DESIRED_SPEC_CHANGED,
                (
                    f"The RayService spec changed to a third one during the upgrade: traffic first moves back to "
                    f"the active RayCluster {back_to}, then a new upgrade starts."
                    if third
                    else f"The RayService spec changed back to the active RayCluster's: traffic moves back to "
                    f"{back_to}."
                ),
            )
        else:
            self.conds[:] = [c for c in self.conds if c.get("type") != C.COND_RS_ROLLBACK_IN_PROGRESS]
        self.conditions(self.blocked if self.active_name and self.pending_name else [])
        self.st["serviceStatus"] = (
            C.RS_SERVICE_STATUS_RUNNING if M._cond_is(self.conds, C.COND_RS_READY, "True") else ""
        )


def step_for(rayservice: Mapping[str, Any], config: M.RayServiceConfig) -> type[M._Step] | None:
    """The step class `rayservice_machine.decide` should use for this RayService."""
    return IncrementalStep if enabled(rayservice, config) else None


def decide(
    rayservice: Mapping[str, Any], world: M.World, config: M.RayServiceConfig | None = None
) -> M.Decision:
    """rayservice_machine.decide with this strategy when the RayService asks for it."""
    cfg = config or M.RayServiceConfig()
    return M.decide(rayservice, world, cfg, step=step_for(rayservice, cfg))
