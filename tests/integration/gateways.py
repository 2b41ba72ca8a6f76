"""A simulated Gateway API implementation for RayService incremental-upgrade tests, and an operator process
to kill.

No Gateway implementation runs here (none comes from a package registry as a plain binary), so the test
plays its controller: a GatewayClass of its own, and for every Gateway of that class and HTTPRoute attached
to one, the conditions a real implementation reports (Gateway Accepted and Programmed; route Accepted, and
ResolvedRefs once every backend Service exists), each for the object's current generation. It does not
split traffic: that is the implementation's job, and rayop only writes the weights. `RouteLog` records
every version of the HTTPRoute through a watch, so a test sees each weight change the operator wrote.

`python -m tests.integration.gateways --kubeconfig K --namespace N --fleet URL` runs the RayCluster and
RayService controllers as their own process against a fake Ray fleet (tests/fake_dashboard.py), for tests
that SIGKILL the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from rayop.base.times import format_time
from rayop.builders import gateway as G
from rayop.runtime.client import (
    GATEWAYCLASSES,
    GATEWAYS,
    HTTPROUTES,
    SERVICES,
    ApiClient,
    ApiError,
    load_kubeconfig,
)

CONTROLLER = "rayop.io/simulated-gateway"


def _cond(ctype: str, ok: bool, reason: str, generation: int, message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message or reason,
        "observedGeneration": generation,
        "lastTransitionTime": format_time(time.time()),
    }


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(cs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration")) for c in cs]

    return key(a) == key(b)


@dataclass
class SimulatedGateway:
    """The Gateway implementation a test plays (see the module docstring)."""

    kube: ApiClient
    namespace: str
    gateway_class: str
    ready: bool = True
    """False: Gateways stay Accepted but not Programmed (as while a load balancer is provisioned)."""
    interval: float = 0.1

    async def reconcile(self) -> None:
        gateways = (await self.kube.list(GATEWAYS, self.namespace))["items"]
        ours = set()
        for gw in gateways:
            if (gw.get("spec") or {}).get("gatewayClassName") != self.gateway_class:
                continue
            ours.add(gw["metadata"]["name"])
            gen = gw["metadata"]["generation"]
            want = [
                _cond("Accepted", True, "Accepted", gen),
                _cond("Programmed", self.ready, "Programmed" if self.ready else "Pending", gen),
            ]
            if not _same((gw.get("status") or {}).get("conditions") or [], want):
                gw["status"] = {
                    "conditions": want,
                    "addresses": [{"type": "IPAddress", "value": "10.99.0.1"}] if self.ready else [],
                }
                with contextlib.suppress(ApiError):
                    await self.kube.replace_status(GATEWAYS, gw)
        services = {s["metadata"]["name"] for s in (await self.kube.list(SERVICES, self.namespace))["items"]}
        for route in (await self.kube.list(HTTPROUTES, self.namespace))["items"]:
            parents = [p for p in route["spec"].get("parentRefs") or [] if p.get("name") in ours]
            if not parents:
                continue
            gen = route["metadata"]["generation"]
            missing = [b.service for b in G.route_backends(route) if b.service not in services]
            conds = [
                _cond("Accepted", True, "Accepted", gen),
                _cond(
                    "ResolvedRefs",
                    not missing,
                    "ResolvedRefs" if not missing else "BackendNotFound",
                    gen,
                    f"services not found: {', '.join(missing)}" if missing else "",
                ),
            ]
            have = (route.get("status") or {}).get("parents") or []
            if len(have) == 1 and _same(have[0].get("conditions") or [], conds):
                continue
            ref = {
                "group": G.GROUP,
                "kind": "Gateway",
                "name": parents[0]["name"],
                "namespace": self.namespace,
            }
            route["status"] = {
                "parents": [{"parentRef": ref, "controllerName": CONTROLLER, "conditions": conds}]
            }
            with contextlib.suppress(ApiError):
                await self.kube.replace_status(HTTPROUTES, route)

    async def run(self) -> None:
        gc = {
            "apiVersion": G.API_VERSION,
            "kind": "GatewayClass",
            "metadata": {"name": self.gateway_class},
            "spec": {"controllerName": CONTROLLER},
        }
        with contextlib.suppress(ApiError):
            await self.kube.create(GATEWAYCLASSES, gc)
        while True:
            with contextlib.suppress(ApiError):
                await self.reconcile()
            await asyncio.sleep(self.interval)


@contextlib.asynccontextmanager
async def simulated_gateway(kube: ApiClient, namespace: str) -> AsyncIterator[SimulatedGateway]:
    sim = SimulatedGateway(kube, namespace, gateway_class=f"sim-{namespace}")
    task = asyncio.create_task(sim.run())
    try:
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(ApiError):
            await kube.delete(GATEWAYCLASSES, sim.gateway_class, ignore_not_found=True)


@dataclass
class RouteLog:
    """Every spec of the HTTPRoute the operator wrote, in order, with its migration time."""

    versions: list[tuple[int, list[G.Backend], str | None]] = field(default_factory=list)

    def weights(self) -> list[dict[str, int]]:
        return [{b.service: b.weight for b in backends} for _, backends, _ in self.versions]


@contextlib.asynccontextmanager
async def route_log(kube: ApiClient, namespace: str, name: str) -> AsyncIterator[RouteLog]:
    log = RouteLog()

    async def follow() -> None:
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listed = await kube.list(HTTPROUTES, namespace)
                    rv = listed["metadata"]["resourceVersion"]
                    for r in listed["items"]:
                        note(r)
                async for ev in kube.watch(HTTPROUTES, namespace, resource_version=rv, bookmarks=False):
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        note(obj)
            except ApiError:
                rv = None
                await asyncio.sleep(0.2)

    def note(r: dict[str, Any]) -> None:
        if r["metadata"]["name"] != name:
            return
        gen = r["metadata"]["generation"]
        if log.versions and log.versions[-1][0] >= gen:
            return
        log.versions.append((gen, G.route_backends(r), G.migrated_at(r)))

    task = asyncio.create_task(follow())
    try:
        yield log
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# The operator as a process of its own -------------------------------------------------------------------


async def _operator_main(kubeconfig: str, namespace: str, fleet_url: str) -> None:
    from tests.fake_dashboard import FleetResolver
    from tests.integration.rayservices import operator

    client = ApiClient(load_kubeconfig(kubeconfig))
    async with operator(client, namespace, FleetResolver(fleet_url), signed_in=True):
        print("operator started", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--fleet", required=True)
    a = parser.parse_args()
    asyncio.run(_operator_main(a.kubeconfig, a.namespace, a.fleet))
