"""The RayService incremental upgrade (`NewClusterWithIncrementalUpgrade`) against a real kube-apiserver and
kube-controller-manager with the Gateway API's CRDs (standard channel, from its Go module), the RayCluster
controller alongside, a fake fleet of Ray dashboards and Serve proxies (tests/fake_dashboard.py), and the
test playing the Gateway implementation (tests/integration/gateways.py): it reports the Gateway's and
HTTPRoute's conditions but splits no traffic; that is the job of whatever implementation a cluster runs.

Each upgrade uses stepSizePercent 25, intervalSeconds 1, maxSurgePercent 50 (KubeRay's 25/5/50 profile with
a shorter interval; the three profiles themselves are checked in tests/unit/test_rayservice_steps.py).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES
from rayop.base.times import parse_time
from rayop.builders import gateway as G
from rayop.builders import rayservice as B
from rayop.local.plane import ControlPlane
from rayop.runtime.client import CRDS, GATEWAYS, HTTPROUTES, SERVICES, ApiClient
from tests import rbac
from tests.fake_dashboard import FakeFleet
from tests.helpers import eventually
from tests.integration.events import events_of, wait_reasons
from tests.integration.gateways import RouteLog, route_log, simulated_gateway
from tests.integration.rayservices import (
    SERVE_V1,
    cluster_config,
    clusters_of,
    condition,
    get_rs,
    names,
    operator,
    rayservice,
    serving_kubelet,
)

T = 90.0
STEP, INTERVAL, SURGE = 25, 1, 50
SERVE_V2 = SERVE_V1 + "    args:\n      greeting: hi\n"
SERVE_V3 = SERVE_V1 + "    args:\n      greeting: hello\n"


@pytest.fixture
async def fleet() -> AsyncIterator[FakeFleet]:
    f = await FakeFleet(deploy_seconds=0.3).start()
    yield f
    await f.stop()


def incremental(name: str, ns: str, gateway_class: str) -> dict[str, Any]:
    cfg = cluster_config()
    cfg["enableInTreeAutoscaling"] = True
    return rayservice(
        name,
        ns,
        rayClusterConfig=cfg,
        upgradeStrategy={
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {
                "gatewayClassName": gateway_class,
                "stepSizePercent": STEP,
                "intervalSeconds": INTERVAL,
                "maxSurgePercent": SURGE,
            },
        },
    )


async def wait_rs(kube: ApiClient, ns: str, name: str, pred: Any, what: str, t: float = T) -> dict[str, Any]:
    async def ok() -> dict[str, Any] | None:
        rs = await get_rs(kube, ns, name)
        return rs if pred(rs) else None

    try:
        res: dict[str, Any] = await eventually(ok, t, 0.1, what=f"{name}: {what}")
    except AssertionError as e:
        rs = await kube.get_or_none(RAYSERVICES, name, ns)
        route = await kube.get_or_none(HTTPROUTES, f"{name}-httproute", ns)
        raise AssertionError(
            f"{e}\nstatus: {(rs or {}).get('status')}\nroute: {G.route_backends(route)} "
            f"{(route or {}).get('status')}\nevents: {await events_of(kube, ns, name)}"
        ) from None
    return res


async def edit(kube: ApiClient, ns: str, name: str, *, ray_version: str, serve: str) -> None:
    rs = await get_rs(kube, ns, name)
    cfg = copy.deepcopy(rs["spec"]["rayClusterConfig"])
    cfg["rayVersion"] = ray_version
    await kube.patch(
        RAYSERVICES, name, {"spec": {"rayClusterConfig": cfg, "serveConfigV2": serve}}, ns, patch_type="merge"
    )


def apps_of(body: dict[str, Any]) -> Any:
    return body.get("applications")


def weight(log: RouteLog, cluster: str) -> int:
    return log.weights()[-1].get(G.cluster_serve_service_name(cluster), 0) if log.versions else 0


def merged_steps(fleet: FakeFleet, log: RouteLog, new: str, old: str, since: float) -> list[tuple[str, int]]:
    """The order in which capacities and traffic changed: each Serve PUT at the time the fake received it,
    each route change at the time the operator decided it (`rayop.io/traffic-migrated-at`). One change per
    pass, each pass after the previous one's writes, so the two clocks order them exactly."""
    out: list[tuple[float, str, int]] = []
    for cluster, key in ((new, "to_capacity"), (old, "from_capacity")):
        serve = fleet.cluster(cluster)
        prev: int | None = None
        for at, body in zip(serve.put_times, serve.puts, strict=True):
            cap = body.get("target_capacity")
            if at >= since and cap is not None and prev is not None and cap != prev:
                out.append((at, key, cap))
            prev = cap
    prev_w: int | None = None
    svc = G.cluster_serve_service_name(new)
    for _, backends, stamp in log.versions:
        w = {b.service: b.weight for b in backends}.get(svc)
        moved = parse_time(stamp)
        if w is not None and prev_w is not None and w != prev_w and moved is not None and len(backends) == 2:
            out.append((moved.timestamp(), "to_traffic", w))
        if w is not None:
            prev_w = w
    return [(k, v) for _, k, v in sorted(out)]


EXPECTED = [  # what KubeRay's e2e test waits for with 25/x/50 (generateUpgradeSteps), plus the last 0
    ("to_capacity", 50),
    ("to_traffic", 25),
    ("to_traffic", 50),
    ("from_capacity", 50),
    ("to_capacity", 100),
    ("to_traffic", 75),
    ("to_traffic", 100),
    ("from_capacity", 0),
]


async def test_gateway_api_crds_installed(kube: ApiClient) -> None:
    for plural in ("gateways", "httproutes", "gatewayclasses", "grpcroutes", "referencegrants"):
        crd = await kube.get(CRDS, f"{plural}.gateway.networking.k8s.io")
        assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"
        assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.6.3"


async def test_upgrade_step_by_step(kube: ApiClient, namespace: str, fleet: FakeFleet) -> None:
    ns, name = namespace, "inc1"
    async with (
        operator(kube, ns, fleet),
        serving_kubelet(kube, ns),
        simulated_gateway(kube, ns) as gw,
        route_log(kube, ns, f"{name}-httproute") as log,
    ):
        await kube.create(RAYSERVICES, incremental(name, ns, gw.gateway_class))
        rs = await wait_rs(
            kube,
            ns,
            name,
            lambda r: condition(r, "Ready").get("status") == "True" and not names(r)[1],
            "ready",
        )
        old = names(rs)[0]
        # The Gateway, the route to the first cluster's own serve Service, and target_capacity 100.
        gateway = await kube.get(GATEWAYS, f"{name}-gateway", ns)
        assert gateway["spec"]["gatewayClassName"] == gw.gateway_class
        assert [(lst["name"], lst["protocol"], lst["port"]) for lst in gateway["spec"]["listeners"]] == [
            ("http", "HTTP", 80)
        ]
        assert gateway["metadata"]["ownerReferences"][0]["kind"] == "RayService"
        await eventually(lambda: weight(log, old) == 100, T, 0.1, what="the route to the first cluster")
        route = await kube.get(HTTPROUTES, f"{name}-httproute", ns)
        assert route["spec"]["parentRefs"][0]["name"] == f"{name}-gateway"
        assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
        svc = await kube.get(SERVICES, f"{old}-serve-svc", ns)
        assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
        assert svc["spec"]["selector"] == {"ray.io/cluster": old, "ray.io/serve": "true"}
        assert (
            await kube.get_or_none(SERVICES, f"{name}-serve-svc", ns) is None
        )  # as KubeRay: via the Gateway
        assert [p["target_capacity"] for p in fleet.cluster(old).puts] == [100]
        st = rs["status"]["activeServiceStatus"]
        assert (st["targetCapacity"], st["trafficRoutedPercent"]) == (100, 100)
        assert rs["status"]["numServeEndpoints"] >= 1

        # A hand edit of the Gateway is put back (the operator's PUT, under the chart's role).
        listener = {"name": "http", "protocol": "HTTP", "port": 8080}
        await kube.patch(
            GATEWAYS, f"{name}-gateway", {"spec": {"listeners": [listener]}}, ns, patch_type="merge"
        )

        async def restored() -> bool:
            g = await kube.get(GATEWAYS, f"{name}-gateway", ns)
            return [lst["port"] for lst in g["spec"]["listeners"]] == [80]

        await eventually(restored, T, 0.1, what="the Gateway's listener put back")

        async def recorded() -> bool:
            return "UpdatedGateway" in {r for r, _ in await events_of(kube, ns, name)}

        await eventually(recorded, T, 0.2, what="an UpdatedGateway event")

        # The Gateway is not Programmed: the new cluster is made and configured, nothing moves.
        gw.ready = False
        since = time.time()
        await edit(kube, ns, name, ray_version="2.60.1", serve=SERVE_V2)
        rs = await wait_rs(kube, ns, name, lambda r: bool(names(r)[1]), "a pending cluster")
        new = names(rs)[1]
        await eventually(lambda: len(fleet.cluster(new).puts) == 1, T, 0.1, what="the new cluster configured")
        rc = await kube.get(RAYCLUSTERS, new, ns)
        # Written without replicas (the autoscaler sizes it); the CRD's default fills in 0, as for KubeRay.
        assert [g.get("replicas", 0) for g in rc["spec"]["workerGroupSpecs"]] == [0]
        await wait_rs(
            kube,
            ns,
            name,
            lambda r: "Programmed" in condition(r, "UpgradeInProgress").get("message", ""),
            "waiting on the Gateway",
        )
        await asyncio.sleep(2)
        assert [p["target_capacity"] for p in fleet.cluster(new).puts] == [0]
        assert len(fleet.cluster(old).puts) == 1 and weight(log, new) == 0

        gw.ready = True
        rs = await wait_rs(kube, ns, name, lambda r: names(r) == (new, ""), "promoted")
        # Capacity by maxSurgePercent, traffic by stepSizePercent, in KubeRay's order.
        assert merged_steps(fleet, log, new, old, since) == EXPECTED
        assert [p["target_capacity"] for p in fleet.cluster(new).puts] == [0, 50, 100]
        assert [p["target_capacity"] for p in fleet.cluster(old).puts] == [100, 50, 0]
        # The old cluster never got the new config.
        assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V1)) for p in fleet.cluster(old).puts)
        assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V2)) for p in fleet.cluster(new).puts)
        # Traffic steps at least intervalSeconds apart (the migration times the operator wrote).
        stamps = [parse_time(s) for _, b, s in log.versions if len(b) == 2]
        moves = sorted({t for t in stamps if t is not None})
        assert len(moves) >= 5  # backend added, then 25, 50, 75, 100
        assert all((b - a).total_seconds() >= INTERVAL for a, b in itertools.pairwise(moves))
        assert log.weights()[-1] == {f"{new}-serve-svc": 100}
        head = await kube.get(SERVICES, f"{name}-head-svc", ns)
        assert head["spec"]["selector"]["ray.io/cluster"] == new
        st = rs["status"]["activeServiceStatus"]
        assert (st["targetCapacity"], st["trafficRoutedPercent"]) == (100, 100)
        assert st["lastTrafficMigratedTime"]
        assert condition(rs, "UpgradeInProgress")["reason"] == "NoPendingCluster"
        await wait_reasons(
            kube,
            ns,
            name,
            "CreatedGateway",
            "CreatedHTTPRoute",
            "UpdatedHTTPRoute",
            "UpdatedServeTargetCapacity",
        )
        await eventually(lambda: _gone(kube, ns, old), T, 0.2, what="the old cluster deleted after the delay")


async def _gone(kube: ApiClient, ns: str, cluster: str) -> bool:
    return await kube.get_or_none(RAYCLUSTERS, cluster, ns) is None


async def test_rollback_cancelled_then_completed(kube: ApiClient, namespace: str, fleet: FakeFleet) -> None:
    """Back to the active spec mid-upgrade: RollbackInProgress, traffic moves back; to the new spec again:
    the rollback is cancelled and traffic moves forward; back once more: the rollback completes."""
    ns, name = namespace, "inc2"
    async with (
        operator(kube, ns, fleet),
        serving_kubelet(kube, ns),
        simulated_gateway(kube, ns) as gw,
        route_log(kube, ns, f"{name}-httproute") as log,
    ):
        await kube.create(RAYSERVICES, incremental(name, ns, gw.gateway_class))
        rs = await wait_rs(kube, ns, name, lambda r: bool(names(r)[0]) and not names(r)[1], "ready")
        old = names(rs)[0]
        await edit(kube, ns, name, ray_version="2.60.1", serve=SERVE_V2)
        new = names(await wait_rs(kube, ns, name, lambda r: bool(names(r)[1]), "a pending cluster"))[1]
        await eventually(lambda: weight(log, new) >= 50, T, 0.1, what="half the traffic moved")

        await edit(kube, ns, name, ray_version="2.60.0", serve=SERVE_V1)
        rs = await wait_rs(
            kube,
            ns,
            name,
            lambda r: condition(r, "RollbackInProgress").get("status") == "True",
            "rolling back",
        )
        c = condition(rs, "RollbackInProgress")
        assert c["reason"] == "DesiredClusterSpecChanged" and old in c["message"]
        at_rollback = weight(log, new)
        await eventually(lambda: weight(log, new) < at_rollback, T, 0.1, what="traffic moving back")

        await edit(kube, ns, name, ray_version="2.60.1", serve=SERVE_V2)
        rs = await wait_rs(
            kube, ns, name, lambda r: not condition(r, "RollbackInProgress"), "rollback cancelled"
        )
        assert names(rs) == (old, new)
        await eventually(lambda: weight(log, new) >= 75, T, 0.1, what="traffic moving forward again")

        await edit(kube, ns, name, ray_version="2.60.0", serve=SERVE_V1)
        rs = await wait_rs(kube, ns, name, lambda r: names(r) == (old, ""), "rolled back")
        assert not condition(rs, "RollbackInProgress")
        assert condition(rs, "UpgradeInProgress")["reason"] == "NoPendingCluster"
        assert log.weights()[-1] == {f"{old}-serve-svc": 100}
        assert fleet.cluster(old).puts[-1]["target_capacity"] == 100
        assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V1)) for p in fleet.cluster(old).puts)
        st = rs["status"]["activeServiceStatus"]
        assert (st["targetCapacity"], st["trafficRoutedPercent"]) == (100, 100)
        # The new cluster's traffic went back, forward, back: never two ways within one phase.
        await eventually(lambda: _gone(kube, ns, new), T, 0.2, what="the new cluster deleted")
        assert await clusters_of(kube, ns, name) == [old]


async def test_third_spec_rolls_back_then_upgrades(kube: ApiClient, namespace: str, fleet: FakeFleet) -> None:
    ns, name = namespace, "inc3"
    async with (
        operator(kube, ns, fleet),
        serving_kubelet(kube, ns),
        simulated_gateway(kube, ns) as gw,
        route_log(kube, ns, f"{name}-httproute") as log,
    ):
        await kube.create(RAYSERVICES, incremental(name, ns, gw.gateway_class))
        old = names(await wait_rs(kube, ns, name, lambda r: bool(names(r)[0]) and not names(r)[1], "ready"))[
            0
        ]
        await edit(kube, ns, name, ray_version="2.60.1", serve=SERVE_V2)
        new = names(await wait_rs(kube, ns, name, lambda r: bool(names(r)[1]), "a pending cluster"))[1]
        await eventually(lambda: weight(log, new) >= 25, T, 0.1, what="a quarter of the traffic moved")
        await edit(kube, ns, name, ray_version="2.60.2", serve=SERVE_V3)
        rs = await wait_rs(
            kube,
            ns,
            name,
            lambda r: condition(r, "RollbackInProgress").get("status") == "True",
            "rolling back",
        )
        assert "third" in condition(rs, "RollbackInProgress")["message"]
        rs = await wait_rs(kube, ns, name, lambda r: names(r)[1] not in ("", new), "a third cluster")
        third = names(rs)[1]
        assert names(rs)[0] == old and not condition(rs, "RollbackInProgress")
        # The third cluster came only once all traffic was back on the old one.
        assert weight(log, old) == 100 or weight(log, third) == 0
        rs = await wait_rs(kube, ns, name, lambda r: names(r) == (third, ""), "the third spec promoted")
        assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V1)) for p in fleet.cluster(old).puts)
        assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V2)) for p in fleet.cluster(new).puts)
        assert apps_of(fleet.cluster(third).puts[-1]) == apps_of(B.serve_config(SERVE_V3))
        assert log.weights()[-1] == {f"{third}-serve-svc": 100}


class OperatorProc:
    """The RayCluster and RayService controllers in a process of their own (tests/integration/gateways.py)."""

    def __init__(self, plane: ControlPlane, namespace: str, fleet: FakeFleet, log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable,
            "-m",
            "tests.integration.gateways",
            "--kubeconfig",
            str(rbac.operator_kubeconfig(plane)),
            "--namespace",
            namespace,
            "--fleet",
            fleet.url,
        ]
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=root, env=dict(os.environ)
        )

    def started(self) -> bool:
        return "operator started" in self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        self.log.close()


async def test_operator_killed_during_upgrade_and_rollback(
    plane: ControlPlane, kube: ApiClient, namespace: str, fleet: FakeFleet, tmp_path: Path
) -> None:
    """SIGKILL at random moments (seeded; the seed is printed, RAYOP_TEST_SEED replays one) through an
    upgrade and then a rollback to a third spec: the end state is the one an uninterrupted operator reaches,
    and neither earlier cluster ever receives a Serve config other than its own (KubeRay issue #4717)."""
    seed = int(os.environ.get("RAYOP_TEST_SEED") or random.randrange(1_000_000))
    print(f"\nseed {seed} (RAYOP_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    ns, name = namespace, "inc4"
    kills = 0
    procs: list[OperatorProc] = []

    async def run_with_kills(done: Any, what: str, budget: int) -> None:
        nonlocal kills
        deadline = time.monotonic() + 150
        while not await done():
            assert time.monotonic() < deadline, f"not done: {what}"
            p = OperatorProc(plane, ns, fleet, tmp_path / "operator.log")
            procs.append(p)
            await eventually(p.started, 60, 0.05, what="the operator process started")
            if kills >= budget:
                await eventually(done, T, 0.1, what=what)
                p.stop()
                return
            await asyncio.sleep(rng.uniform(0.2, 2.5))
            p.stop()
            kills += 1

    try:
        async with (
            serving_kubelet(kube, ns),
            simulated_gateway(kube, ns) as gw,
            route_log(kube, ns, f"{name}-httproute") as log,
        ):
            await kube.create(RAYSERVICES, incremental(name, ns, gw.gateway_class))

            async def first_ready() -> bool:
                rs = await get_rs(kube, ns, name)
                return (
                    bool(names(rs)[0]) and not names(rs)[1] and condition(rs, "Ready").get("status") == "True"
                )

            await run_with_kills(first_ready, "first cluster ready", budget=1)
            old = names(await get_rs(kube, ns, name))[0]
            await edit(kube, ns, name, ray_version="2.60.1", serve=SERVE_V2)

            async def half_moved() -> bool:
                p = names(await get_rs(kube, ns, name))[1]
                return bool(p) and weight(log, p) >= 50

            await run_with_kills(half_moved, "half the traffic on the new cluster", budget=4)
            new = names(await get_rs(kube, ns, name))[1]
            await edit(kube, ns, name, ray_version="2.60.2", serve=SERVE_V3)

            async def third_active() -> bool:
                a, p = names(await get_rs(kube, ns, name))
                return a not in ("", old, new) and not p and weight(log, a) == 100

            await run_with_kills(third_active, "rolled back, then upgraded to the third spec", budget=8)
            print(f"{kills} kills")
            rs = await get_rs(kube, ns, name)
            third = names(rs)[0]
            # The state an uninterrupted operator ends in.
            assert names(rs) == (third, "")
            assert not condition(rs, "RollbackInProgress")
            assert condition(rs, "UpgradeInProgress")["reason"] == "NoPendingCluster"
            st = rs["status"]["activeServiceStatus"]
            assert (st["targetCapacity"], st["trafficRoutedPercent"]) == (100, 100)
            assert log.weights()[-1] == {f"{third}-serve-svc": 100}
            rc = await kube.get(RAYCLUSTERS, third, ns)
            assert rc["metadata"]["annotations"]["rayop.io/target-capacity"] == "100"
            assert apps_of(fleet.cluster(third).puts[-1]) == apps_of(B.serve_config(SERVE_V3))
            assert fleet.cluster(third).puts[-1]["target_capacity"] == 100
            # Neither earlier cluster ever got a config that was not its own.
            assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V1)) for p in fleet.cluster(old).puts)
            assert all(apps_of(p) == apps_of(B.serve_config(SERVE_V2)) for p in fleet.cluster(new).puts)
            # Traffic to the new cluster went up, then only down (the rollback), never up again.
            ws = [w.get(f"{new}-serve-svc") for w in log.weights() if f"{new}-serve-svc" in w]
            peak = ws.index(max(ws))
            assert ws[: peak + 1] == sorted(ws[: peak + 1]) and ws[peak:] == sorted(ws[peak:], reverse=True)
            assert kills >= 1
    finally:
        for p in procs:
            p.stop()
