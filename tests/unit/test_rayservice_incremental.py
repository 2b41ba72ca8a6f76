"""The incremental upgrade (rayop/controllers/rayservice_incremental.py) through the pure machine, run
against a small in-memory world: the API server's objects (RayService status, RayClusters and their
annotations, Services, Gateway, HTTPRoute), Serve on each cluster (what was PUT), and a Gateway
implementation that reports Accepted/Programmed/ResolvedRefs. Nothing is kept between passes but that
world, as for the real operator, so stopping the machine after any prefix of a pass's actions is what a
killed operator leaves behind.

The integration tests (tests/integration/test_rayservice_incremental.py) run the same flows against a real
API server with the Gateway API's CRDs.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from rayop.builders import gateway as G
from rayop.builders import rayservice as B
from rayop.controllers import rayservice_incremental as I
from rayop.controllers import rayservice_machine as M
from rayop.controllers import rayservice_steps as S
from tests.unit.test_rayservice_machine import SERVE_V1, SERVE_V2, T0, cluster_config, head_pod

PASS = timedelta(seconds=2)


def incremental_rs(step: int = 25, interval: int = 5, surge: int = 50, **spec: Any) -> dict[str, Any]:
    cfg = cluster_config()
    cfg["enableInTreeAutoscaling"] = True
    s: dict[str, Any] = {
        "serveConfigV2": SERVE_V1,
        "rayClusterConfig": cfg,
        "upgradeStrategy": {
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {
                "gatewayClassName": "sim",
                "stepSizePercent": step,
                "intervalSeconds": interval,
                "maxSurgePercent": surge,
            },
        },
        "rayClusterDeletionDelaySeconds": 0,
    }
    s.update(spec)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "rs", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": s,
        "status": {},
    }


def with_image(rs: dict[str, Any], image: str, serve: str | None = None) -> None:
    """Edit the RayService spec (a new cluster spec, and maybe a new Serve config), as `kubectl edit` would."""
    rs["metadata"]["generation"] += 1
    for g in [
        rs["spec"]["rayClusterConfig"]["headGroupSpec"],
        *rs["spec"]["rayClusterConfig"]["workerGroupSpecs"],
    ]:
        g["template"]["spec"]["containers"][0]["image"] = image
    if serve is not None:
        rs["spec"]["serveConfigV2"] = serve


@dataclass
class Serve:
    puts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any] | None:
        return self.puts[-1] if self.puts else None


@dataclass
class Sim:
    """The world the machine sees; `step()` runs one reconcile (optionally cut short after `cut` actions)."""

    rs: dict[str, Any]
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    serve: dict[str, Serve] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    gateway: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    gateway_ready: bool = True
    now: Any = T0
    suffixes: Any = None
    events: list[tuple[str, str]] = field(default_factory=list)
    route_history: list[tuple[Any, list[G.Backend]]] = field(default_factory=list)
    capacity_changes: list[tuple[str, int]] = field(default_factory=list)
    rv: int = 1

    def __post_init__(self) -> None:
        self.suffixes = iter(f"c{i:04d}" for i in range(10_000))

    def _rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def world(self) -> M.World:
        observed = {}
        for name, c in self.clusters.items():
            svc = self.services.get(G.cluster_serve_service_name(name))
            sv = self.serve.setdefault(name, Serve())
            apps = {
                a["name"]: {"status": "RUNNING", "message": ""}
                for a in (sv.config or {}).get("applications", [])
            }
            observed[name] = M.ClusterObs(
                cluster=copy.deepcopy(c),
                head_pod=head_pod(name, serve="true"),
                head_proxy=True,
                serve=M.ServeLookup(apps=apps),
                serving_pods=1,
                serve_service=copy.deepcopy(svc) if svc else None,
                serve_endpoints=1 if svc and apps else 0,
            )
        return M.World(
            now=self.now,
            clusters=observed,
            head_service=copy.deepcopy(self.services.get("rs-head-svc")),
            suffix=next(self.suffixes),
            gateway=copy.deepcopy(self.gateway),
            httproute=copy.deepcopy(self.route),
        )

    def decide(self) -> M.Decision:
        return I.decide(copy.deepcopy(self.rs), self.world())

    def step(self, cut: int | None = None, half: bool = False) -> M.Decision:
        """One pass; with `cut`, only its first `cut` actions, and with `half` the next one's Serve PUT
        without the record the reconciler writes after it (a kill between the two)."""
        d = self.decide()
        actions = d.actions if cut is None else d.actions[:cut]
        for a in actions:
            self.act(a)
        if cut is not None and half and cut < len(d.actions):
            nxt = d.actions[cut]
            if isinstance(nxt, M.ApplyServeConfig):
                self.serve.setdefault(nxt.cluster, Serve()).puts.append(copy.deepcopy(nxt.config))
        if (cut is None or cut >= len(d.actions)) and d.status_changed:
            self.rs["status"] = copy.deepcopy(d.status)
        self.implementation()
        self.now += PASS
        return d

    def act(self, a: M.Action) -> None:
        if isinstance(a, M.CreateCluster):
            c = copy.deepcopy(a.cluster)
            c["metadata"]["uid"] = "uid-" + c["metadata"]["name"]
            c["metadata"]["resourceVersion"] = self._rv()
            c["status"] = {"conditions": [{"type": "HeadPodReady", "status": "True"}]}
            self.clusters[c["metadata"]["name"]] = c
        elif isinstance(a, M.UpdateCluster):
            self.clusters[a.cluster["metadata"]["name"]] = copy.deepcopy(a.cluster)
        elif isinstance(a, M.AnnotateCluster):
            ann = self.clusters[a.name]["metadata"].setdefault("annotations", {})
            for k, v in a.annotations.items():
                if v is None:
                    ann.pop(k, None)
                else:
                    ann[k] = v
        elif isinstance(a, M.DeleteCluster):
            self.clusters.pop(a.name, None)
            self.services.pop(G.cluster_serve_service_name(a.name), None)  # garbage-collected with it
        elif isinstance(a, M.ApplyServeConfig):
            self.serve.setdefault(a.cluster, Serve()).puts.append(copy.deepcopy(a.config))
            if a.capacity_change:
                self.capacity_changes.append((a.cluster, a.config["target_capacity"]))
            ann = self.clusters[a.cluster]["metadata"].setdefault("annotations", {})
            ann.update(a.record)
            ann["rayop.io/serve-config-hash"] = a.config_hash
        elif isinstance(a, M.CreateService | M.SwitchService):
            if isinstance(a, M.CreateService):
                svc = copy.deepcopy(a.service)
            else:
                svc = copy.deepcopy(self.services[a.name])
                svc["spec"] = copy.deepcopy(a.spec)
            self.services[svc["metadata"]["name"]] = svc
        elif isinstance(a, M.CreateGateway | M.UpdateGateway):
            obj = copy.deepcopy(a.gateway)
            obj["metadata"]["generation"] = (self.gateway or {}).get("metadata", {}).get("generation", 0) + 1
            obj["status"] = (self.gateway or {}).get("status", {})
            self.gateway = obj
        elif isinstance(a, M.CreateHTTPRoute | M.UpdateHTTPRoute):
            obj = copy.deepcopy(a.route)
            obj["metadata"]["generation"] = (self.route or {}).get("metadata", {}).get("generation", 0) + 1
            obj["status"] = (self.route or {}).get("status", {})
            self.route = obj
            self.route_history.append((self.now, G.route_backends(obj)))
        elif isinstance(a, M.Event):
            self.events.append((a.reason, a.message))

    def implementation(self) -> None:
        """The Gateway implementation: accept and program the Gateway, accept the route once its backends exist."""
        if self.gateway is not None and self.gateway_ready:
            gen = self.gateway["metadata"]["generation"]
            self.gateway["status"] = {
                "conditions": [
                    {"type": t, "status": "True", "reason": t, "observedGeneration": gen}
                    for t in ("Accepted", "Programmed")
                ]
            }
        if self.route is not None and self.gateway_ready:
            gen = self.route["metadata"]["generation"]
            resolved = all(b.service in self.services for b in G.route_backends(self.route))
            self.route["status"] = {
                "parents": [
                    {
                        "parentRef": {"name": "rs-gateway", "namespace": "ns"},
                        "controllerName": "example.com/sim",
                        "conditions": [
                            {"type": "Accepted", "status": "True", "observedGeneration": gen},
                            {
                                "type": "ResolvedRefs",
                                "status": "True" if resolved else "False",
                                "reason": "ResolvedRefs" if resolved else "BackendNotFound",
                                "observedGeneration": gen,
                            },
                        ],
                    }
                ]
            }

    # Views

    @property
    def names(self) -> tuple[str, str]:
        return M.cluster_names(self.rs)

    def cond(self, ctype: str) -> dict[str, Any]:
        return next((c for c in self.rs["status"].get("conditions", []) if c["type"] == ctype), {})

    def capacity(self, name: str) -> int | None:
        return I.recorded_capacity(self.clusters[name])

    def run_until(self, pred: Any, limit: int = 400, what: str = "") -> None:
        for _ in range(limit):
            if pred():
                return
            self.step()
        raise AssertionError(f"not reached after {limit} passes: {what}; status {self.rs['status']}")


def first_cluster(sim: Sim) -> str:
    sim.run_until(lambda: sim.names[0] and not sim.names[1], what="first cluster active")
    return sim.names[0]


def test_first_cluster_gets_full_capacity_gateway_and_route() -> None:
    sim = Sim(incremental_rs())
    active = first_cluster(sim)
    assert sim.serve[active].puts[0]["target_capacity"] == 100
    assert sim.capacity(active) == 100
    assert sim.clusters[active]["metadata"]["annotations"]["rayop.io/serve-config"] == SERVE_V1
    # The first cluster keeps its replicas (only an upgrade's new cluster starts without them).
    assert sim.clusters[active]["spec"]["workerGroupSpecs"][0]["replicas"] == 1
    assert sim.gateway is not None and sim.gateway["spec"] == {
        "gatewayClassName": "sim",
        "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
    }
    assert G.route_backends(sim.route) == [G.Backend(f"{active}-serve-svc", 8000, 100)]
    svc = sim.services[f"{active}-serve-svc"]
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
    assert svc["spec"]["selector"] == {"ray.io/cluster": active, "ray.io/serve": "true"}
    assert sim.services["rs-head-svc"]["spec"]["selector"]["ray.io/cluster"] == active
    assert "rs-serve-svc" not in sim.services  # traffic goes through the Gateway, as in KubeRay
    st = sim.rs["status"]
    assert st["activeServiceStatus"]["targetCapacity"] == 100
    assert st["activeServiceStatus"]["trafficRoutedPercent"] == 100
    assert st["numServeEndpoints"] == 1
    assert sim.cond("Ready")["status"] == "True"
    reasons = {r for r, _ in sim.events}
    assert not reasons & {"FailedToCreateGateway", "FailedToCreateHTTPRoute"}


def upgrade_to(sim: Sim, image: str, serve: str | None = None) -> str:
    with_image(sim.rs, image, serve)
    sim.run_until(lambda: bool(sim.names[1]) and sim.names[1] in sim.clusters, what="pending cluster created")
    return sim.names[1]


@pytest.mark.parametrize(("step", "interval", "surge"), [(100, 1, 100), (25, 5, 50), (5, 10, 25)])
def test_upgrade_moves_capacity_and_traffic_step_by_step(step: int, interval: int, surge: int) -> None:
    sim = Sim(incremental_rs(step, interval, surge))
    old = first_cluster(sim)
    new = upgrade_to(sim, "rayproject/ray:2.60.1", SERVE_V2)
    assert "replicas" not in sim.clusters[new]["spec"]["workerGroupSpecs"][0]
    sim.run_until(lambda: sim.names == (new, ""), what="promoted")
    # The new cluster started at target_capacity 0 and rose by maxSurgePercent; the old one fell.
    new_caps = [p["target_capacity"] for p in sim.serve[new].puts]
    old_caps = [p["target_capacity"] for p in sim.serve[old].puts]
    assert new_caps == sorted(new_caps) and new_caps[0] == 0 and new_caps[-1] == 100
    assert old_caps == sorted(old_caps, reverse=True) and old_caps[-1] == 0
    assert all(b - a <= surge for a, b in itertools.pairwise(new_caps))
    # The old cluster never got the new config; the new one only ever the new one.
    assert all(p["applications"] == B.serve_config(SERVE_V1)["applications"] for p in sim.serve[old].puts)
    assert all(p["applications"] == B.serve_config(SERVE_V2)["applications"] for p in sim.serve[new].puts)
    # The route: the new cluster's weight only rises, by stepSizePercent, intervalSeconds apart.
    weights = [(at, {b.service: b.weight for b in bs}) for at, bs in sim.route_history]
    ups = [(at, w[f"{new}-serve-svc"]) for at, w in weights if f"{new}-serve-svc" in w]
    values = [v for _, v in ups]
    assert values == sorted(values) and values[0] == 0
    changes = [(at, v) for (at, v), (_, prev) in zip(ups[1:], ups, strict=False) if v != prev]
    assert changes and all(b - a <= step for (_, a), (_, b) in zip([ups[0], *changes], changes, strict=False))
    times = [ups[0][0]] + [at for at, _ in changes]
    assert all((b - a).total_seconds() >= interval for a, b in itertools.pairwise(times))
    assert G.route_backends(sim.route) == [G.Backend(f"{new}-serve-svc", 8000, 100)]
    assert sim.services["rs-head-svc"]["spec"]["selector"]["ray.io/cluster"] == new
    assert sim.rs["status"]["activeServiceStatus"]["targetCapacity"] == 100
    assert sim.cond("UpgradeInProgress")["reason"] == "NoPendingCluster"
    # Every capacity change after the first PUT is reported as one (event UpdatedServeTargetCapacity).
    assert [c for _, c in sim.capacity_changes] == [c for n, c in sim.capacity_changes if n in (old, new)]
    assert len(sim.capacity_changes) == len(new_caps) - 1 + len(old_caps) - 1
    # The old cluster is deleted after the (0 s) delay.
    sim.run_until(lambda: old not in sim.clusters, what="old cluster deleted")


def test_nothing_moves_until_the_gateway_and_route_are_ready() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    sim.gateway_ready = False
    sim.gateway["status"] = {}  # type: ignore[index]
    new = upgrade_to(sim, "rayproject/ray:2.60.1")
    for _ in range(20):
        sim.step()
    assert sim.capacity(old) == 100 and sim.capacity(new) == 0
    assert G.route_weight(sim.route, f"{new}-serve-svc") == 0
    msg = sim.cond("UpgradeInProgress")["message"]
    assert "Gateway rs-gateway" in msg and "Accepted" in msg
    sim.gateway_ready = True
    sim.run_until(lambda: sim.names == (new, ""), what="promoted once the Gateway is ready")


def mid_upgrade(sim: Sim, new: str, pending_traffic: int) -> None:
    sim.run_until(
        lambda: (G.route_weight(sim.route, f"{new}-serve-svc") or 0) >= pending_traffic,
        what=f"{pending_traffic}% to the new cluster",
    )


def test_spec_back_to_the_active_one_rolls_back() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    image = sim.rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    new = upgrade_to(sim, "rayproject/ray:2.60.1", SERVE_V2)
    mid_upgrade(sim, new, 50)
    with_image(sim.rs, image, SERVE_V1)
    sim.step()
    assert sim.cond("RollbackInProgress")["status"] == "True"
    assert sim.cond("RollbackInProgress")["reason"] == "DesiredClusterSpecChanged"
    assert "back to the active RayCluster's" in sim.cond("RollbackInProgress")["message"]
    back = [G.route_weight(sim.route, f"{old}-serve-svc")]
    sim.run_until(lambda: sim.names == (old, ""), what="rolled back")
    assert not sim.cond("RollbackInProgress")
    assert sim.capacity(old) == 100 and sim.serve[new].puts[-1]["target_capacity"] == 0
    assert G.route_backends(sim.route) == [G.Backend(f"{old}-serve-svc", 8000, 100)]
    olds = [{b.service: b.weight for b in bs}.get(f"{old}-serve-svc") for _, bs in sim.route_history]
    after = olds[olds.index(back[0]) :]
    assert after == sorted(after)  # traffic only moved back to the old cluster
    assert all(p["applications"] == B.serve_config(SERVE_V1)["applications"] for p in sim.serve[old].puts)
    sim.run_until(lambda: new not in sim.clusters, what="the new cluster deleted")


def test_third_spec_rolls_back_first_then_upgrades() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    new = upgrade_to(sim, "rayproject/ray:2.60.1", SERVE_V2)
    mid_upgrade(sim, new, 25)
    serve_v3 = SERVE_V2.replace("hi", "hello")
    with_image(sim.rs, "rayproject/ray:2.60.2", serve_v3)
    sim.step()
    assert "third" in sim.cond("RollbackInProgress")["message"]
    assert sim.names == (old, new)
    sim.run_until(lambda: sim.names[1] not in ("", new), what="rolled back, then a new upgrade")
    third = sim.names[1]
    assert sim.names[0] == old and not sim.cond("RollbackInProgress")
    sim.run_until(lambda: sim.names == (third, ""), what="the third spec promoted")
    assert all(p["applications"] == B.serve_config(SERVE_V1)["applications"] for p in sim.serve[old].puts)
    assert sim.serve[third].config["applications"] == B.serve_config(serve_v3)["applications"]  # type: ignore[index]


def test_spec_back_to_the_new_one_cancels_the_rollback() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    image = sim.rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    new = upgrade_to(sim, "rayproject/ray:2.60.1", SERVE_V2)
    mid_upgrade(sim, new, 50)
    with_image(sim.rs, image, SERVE_V1)
    sim.run_until(lambda: (G.route_weight(sim.route, f"{old}-serve-svc") or 0) > 50, what="rolling back")
    assert sim.cond("RollbackInProgress")["status"] == "True"
    with_image(sim.rs, "rayproject/ray:2.60.1", SERVE_V2)
    sim.step()
    assert not sim.cond("RollbackInProgress")
    assert sim.names == (old, new)
    sim.run_until(lambda: sim.names == (new, ""), what="the upgrade completes")


def test_back_before_the_new_cluster_exists_cancels_at_once() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    image = sim.rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    with_image(sim.rs, "rayproject/ray:2.60.1")
    sim.step()  # names the pending cluster
    pending = sim.names[1]
    assert pending and pending not in sim.clusters
    with_image(sim.rs, image)
    d = sim.step()
    assert sim.names == (old, "") and not any(isinstance(a, M.CreateCluster) for a in d.actions)
    assert list(sim.clusters) == [old]


def test_active_cluster_gone_mid_rollback_is_reported_and_the_new_cluster_takes_over() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    image = sim.rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    new = upgrade_to(sim, "rayproject/ray:2.60.1")
    mid_upgrade(sim, new, 25)
    with_image(sim.rs, image)
    del sim.clusters[old]
    sim.step()
    assert "RollbackImpossible" in [r for r, _ in sim.events]
    sim.run_until(lambda: sim.names[0] == new, what="the new cluster promoted")
    assert sim.capacity(new) == 100
    # Then a new upgrade brings the spec the user asked for.
    sim.run_until(lambda: sim.names[1] not in ("", new), what="a new upgrade to the original spec")


def test_active_cluster_without_a_recorded_config_is_never_sent_the_new_one() -> None:
    sim = Sim(incremental_rs())
    old = first_cluster(sim)
    for k in ("rayop.io/serve-config", "rayop.io/target-capacity"):
        del sim.clusters[old]["metadata"]["annotations"][k]
    puts = len(sim.serve[old].puts)
    new = upgrade_to(sim, "rayproject/ray:2.60.1", SERVE_V2)
    sim.run_until(lambda: sim.names == (new, ""), what="promoted")
    assert len(sim.serve[old].puts) == puts
    assert any(r == "FailedToUpdateTargetCapacity" and "before rayop recorded" in m for r, m in sim.events)


def test_status_reports_capacity_traffic_and_migration_time() -> None:
    sim = Sim(incremental_rs())
    first_cluster(sim)
    new = upgrade_to(sim, "rayproject/ray:2.60.1")
    mid_upgrade(sim, new, 25)
    sim.step()
    st = sim.rs["status"]
    p, a = st["pendingServiceStatus"], st["activeServiceStatus"]
    assert p["trafficRoutedPercent"] + a["trafficRoutedPercent"] == 100
    assert p["targetCapacity"] == 50 and a["targetCapacity"] == 100
    assert p["lastTrafficMigratedTime"] == a["lastTrafficMigratedTime"]
    assert sim.cond("UpgradeInProgress")["status"] == "True"


def final_state(sim: Sim) -> tuple[Any, ...]:
    active, pending = sim.names
    return (
        pending,
        sim.clusters[active]["metadata"]["annotations"]["ray.io/hash-without-replicas-and-workers-to-delete"],
        sim.capacity(active),
        [(b.port, b.weight) for b in G.route_backends(sim.route)],
        G.route_backends(sim.route)[0].service == f"{active}-serve-svc",
        (sim.serve[active].config or {}).get("applications"),
        sim.rs["status"]["activeServiceStatus"]["targetCapacity"],
        sim.rs["status"]["activeServiceStatus"]["trafficRoutedPercent"],
    )


@pytest.mark.parametrize("seed", range(12))
def test_stopped_after_any_action_ends_in_the_same_state(seed: int) -> None:
    """A pass cut short after a random number of its actions (what SIGKILL leaves), again and again through
    an upgrade and a rollback to a third spec: the end state is the uninterrupted run's, and the active
    cluster only ever got its own config."""
    rng = random.Random(seed)
    print(f"seed {seed}")

    def scenario(cut: bool) -> tuple[Any, ...]:
        sim = Sim(incremental_rs(25, 4, 50))
        old = first_cluster(sim)
        new = upgrade_to(sim, "rayproject/ray:2.60.1", SERVE_V2)
        serve_v3 = SERVE_V2.replace("hi", "hello")
        mid_upgrade(sim, new, 50)
        with_image(sim.rs, "rayproject/ray:2.60.2", serve_v3)
        for _ in range(600):
            if sim.names[1] == "" and sim.names[0] not in (old, new) and sim.route is not None:
                break
            if cut and rng.random() < 0.4:
                n = len(sim.decide().actions)
                sim.step(cut=rng.randrange(n + 1) if n else 0, half=rng.random() < 0.5)
            else:
                sim.step()
        sim.run_until(lambda: sim.names[1] == "" and sim.names[0] not in (old, new), what="third spec active")
        for _ in range(5):
            sim.step()
        for name in (old, new):
            for p in sim.serve.get(name, Serve()).puts:
                want = SERVE_V1 if name == old else SERVE_V2
                assert p["applications"] == B.serve_config(want)["applications"], (name, p)
        return final_state(sim)

    assert scenario(cut=True) == scenario(cut=False)


def test_not_incremental_without_the_gate() -> None:
    rs = incremental_rs()
    assert I.step_for(rs, M.RayServiceConfig(gates={"RayServiceIncrementalUpgrade": False})) is None
    assert I.step_for(rs, M.RayServiceConfig()) is I.IncrementalStep
    rs["spec"]["upgradeStrategy"] = {"type": "NewCluster"}
    assert I.step_for(rs, M.RayServiceConfig()) is None


def test_options_read_from_the_spec() -> None:
    assert I.options(incremental_rs(5, 10, 25)) == S.Options(5, 10, 25)
    rs = incremental_rs()
    del rs["spec"]["upgradeStrategy"]["clusterUpgradeOptions"]["maxSurgePercent"]
    assert I.options(rs).max_surge_percent == 100
