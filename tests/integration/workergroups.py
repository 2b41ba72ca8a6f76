"""Helpers for RayWorkerGroup integration tests: an in-process operator (RayCluster + RayWorkerGroup
controllers), a stand-in for Ray's node state on the dashboard, and a stand-in kubelet for drain Pods.

The plane has no kubelet and runs no Ray. Worker Pods are made Ready by `fake_kubelet`
(tests/integration/rayclusters.py); `FakeRayState` answers the dashboard calls the controller makes
(/nodes?view=summary, /api/v0/tasks, /api/v0/actors) with one Ray node per ready worker Pod, busy as the
test says; `drain_kubelet` "runs" each drain Pod the way Ray's raylet answers a drain for idle
termination: accepted (exit 0, the node dies) when the node is idle, refused (exit 3) when it is busy.
The same path with real Ray runs in tests/e2e/test_rayworkergroup_ray.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from rayop.api import constants as C
from rayop.api import workergroup as W
from rayop.api.kinds import RAYCLUSTERS, RAYWORKERGROUPS
from rayop.controllers import raycluster as rcmod
from rayop.controllers import raycluster_metrics
from rayop.controllers import rayworkergroup as rwgmod
from rayop.controllers.settings import ControllerSettings
from rayop.runtime.client import PODS, ApiClient, ApiError
from rayop.runtime.manager import Manager
from tests.integration.rayjobs import terminated_status

Obj = dict[str, Any]


@dataclass
class Load:
    tasks: int = 0
    actors: int = 0
    copies: int = 0


@dataclass
class FakeRayState:
    """Ray's nodes as the dashboard reports them: one per ready worker Pod of the namespace."""

    kube: ApiClient
    namespace: str
    busy: dict[str, Load] = field(default_factory=dict)  # worker Pod -> what it runs
    dead: set[str] = field(default_factory=set)  # worker Pods whose node Ray drained
    down: bool = False  # answer 503, as a dashboard whose GCS is gone
    calls: int = 0
    _runner: web.AppRunner | None = None
    port: int = 0

    async def _pods(self) -> list[Obj]:
        sel = f"{C.LABEL_NODE_TYPE}={C.NODE_TYPE_WORKER}"
        items: list[Obj] = (await self.kube.list(PODS, self.namespace, label_selector=sel))["items"]
        return [p for p in items if (p.get("status") or {}).get("phase") == "Running"]

    async def _summary(self, _: web.Request) -> web.Response:
        self.calls += 1
        if self.down:
            return web.Response(status=503, text="GCS unavailable")
        rows = []
        for p in await self._pods():
            name = p["metadata"]["name"]
            load = self.busy.get(name, Load())
            rows.append(
                {
                    "raylet": {
                        "nodeId": f"node-{name}",
                        "instanceId": name,
                        "nodeManagerAddress": (p.get("status") or {}).get("podIP", ""),
                        "state": "DEAD" if name in self.dead else "ALIVE",
                        "storeStats": {"numObjectStorePrimaryCopies": str(load.copies)}
                        if load.copies
                        else {},
                    }
                }
            )
        return web.json_response({"result": True, "data": {"summary": rows}})

    def _rows(self, kind: str) -> list[Obj]:
        rows = []
        for name, load in self.busy.items():
            for i in range(load.tasks if kind == "tasks" else load.actors):
                rows.append(
                    {"state": "RUNNING" if kind == "tasks" else "ALIVE", "node_id": f"node-{name}", "i": i}
                )
        return rows

    async def _state(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, text="GCS unavailable")
        rows = self._rows(request.match_info["kind"])
        body = {"result": True, "msg": "", "data": {"result": {"total": len(rows), "result": rows}}}
        return web.json_response(body)

    async def start(self) -> FakeRayState:
        app = web.Application()
        app.router.add_get("/nodes", self._summary)
        app.router.add_get("/api/v0/{kind}", self._state)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def drain_kubelet(
    kube: ApiClient, state: FakeRayState, interval: float = 0.2
) -> AsyncIterator[list[str]]:
    """Answer each drain Pod once, as the raylet would; yields the worker Pods drained so far."""
    done: set[str] = set()
    drained: list[str] = []

    async def answer(pod: Obj) -> None:
        worker = pod["metadata"]["annotations"][W.ANN_DRAIN_WORKER_POD]
        load = state.busy.get(worker)
        idle = load is None or (load.tasks, load.actors, load.copies) == (0, 0, 0)
        status = terminated_status(pod, 0 if idle else W.DRAIN_EXIT_REFUSED)
        if not idle:
            status["containerStatuses"][0]["state"]["terminated"]["message"] = (
                "The drain request is not accepted: The node to be idle terminated is no longer idle."
            )
        else:
            state.dead.add(worker)
            drained.append(worker)
        body = copy.deepcopy(pod)
        body["status"] = status
        with contextlib.suppress(ApiError):
            await kube.replace_status(PODS, body)

    async def loop() -> None:
        while True:
            with contextlib.suppress(ApiError):
                sel = f"{C.LABEL_NODE_TYPE}={W.NODE_TYPE_DRAIN}"
                for p in (await kube.list(PODS, state.namespace, label_selector=sel))["items"]:
                    if p["metadata"]["uid"] not in done and not p["metadata"].get("deletionTimestamp"):
                        done.add(p["metadata"]["uid"])
                        await answer(p)
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield drained
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def operator(
    client: ApiClient,
    namespace: str,
    *,
    state: FakeRayState | None = None,
    retry_seconds: float = 1.0,
    use_proxy: bool = False,
) -> AsyncIterator[Manager]:
    """RayCluster and RayWorkerGroup controllers in this process, watching one namespace; the dashboard
    of every cluster is `state`, or the real one through the API server's service proxy (`use_proxy`)."""
    mgr = Manager(
        client,
        leader_election=False,
        namespaces=[namespace],
        metrics_addr=None,
        probe_addr=None,
        handle_signals=False,
        concurrency=4,
    )
    settings = ControllerSettings.from_env({C.OPENV_RAYCLUSTER_DEFAULT_REQUEUE_SECONDS: "10"})
    resolver = (lambda _addr: state.url) if state is not None else None
    settings = replace(
        settings,
        workergroups=replace(
            settings.workergroups,
            dashboard_resolver=resolver,
            retry_seconds=retry_seconds,
            use_kubernetes_proxy=use_proxy,
        ),
        reconcile_concurrency=4,
        enable_metrics=True,
    )
    rcmod.setup(mgr, settings)
    rwgmod.setup(mgr, settings)
    task = asyncio.create_task(mgr.run())
    try:
        yield mgr
    finally:
        mgr.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            raycluster_metrics.unregister(mgr.informer(RAYCLUSTERS))


async def get_rwg(kube: ApiClient, ns: str, name: str) -> Obj | None:
    return await kube.get_or_none(RAYWORKERGROUPS, name, ns)


async def set_scale(kube: ApiClient, ns: str, name: str, replicas: int) -> Obj:
    """What the HPA does: read the Scale, write it back with new spec.replicas (again on a conflict: the
    operator writes the status meanwhile)."""
    for _ in range(10):
        scale: Obj = await kube.request("GET", RAYWORKERGROUPS.path(ns, name, "scale"))
        scale["spec"]["replicas"] = replicas
        try:
            out: Obj = await kube.request("PUT", RAYWORKERGROUPS.path(ns, name, "scale"), body=scale)
        except ApiError as e:
            if e.conflict:
                continue
            raise
        return out
    raise AssertionError(f"could not write the scale of {ns}/{name}: conflicts")
