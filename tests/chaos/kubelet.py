"""A stand-in kubelet for the campaign's fake-Ray segment, on a stand-in Node.

What a kubelet would do, through the API server, for the pods of the campaign's namespaces:

- Ray pods: bound to the Node, then Running and Ready with an IP of their own (so the EndpointSlice
  controller fills the serve Service, as on a cluster); a deleted Ray pod is removed once its deletion is
  asked for, as a kubelet confirms a pod's end.
- RayJob submitter pods (K8sJobMode): run what the submitter script does against the fleet (`ray job
  status` first, submit with the RayJob's id only if Ray does not know it, then follow until the job
  ends), then Succeeded.
- The submitter sidecar of a SidecarMode head pod: a plain `ray job submit` (refused by Ray if the id
  exists), the container terminated with the job's outcome.
- Any other Job pod (the Redis cleanup Job of a GCS FT cluster): Succeeded.

Ray itself is the fleet (`tests/fake_dashboard.FakeFleet`), reached in-process, as the real scripts would
reach a head's dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from typing import Any

from rayop.api import constants as C
from rayop.base.times import format_time
from rayop.runtime.client import NODES, PODS, ApiClient, ApiError
from tests.fake_dashboard import FakeFleet
from tests.integration.rayclusters import running_ready_status, stand_in_node_status
from tests.integration.rayjobs import terminated_status

NODE = "chaos-node"
JOB_LABEL = "batch.kubernetes.io/job-name"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}


def entrypoint_of(script: str) -> str:
    """The entrypoint in a submitter script: the words after `--`, up to the ` ;` that ends them (the
    campaign's entrypoints have no ` ;` of their own)."""
    rest = script.split(" -- ", 1)[1] if " -- " in script else ""
    return rest.split(" ;", 1)[0].strip()


class FakeKubelet:
    def __init__(
        self, kube: ApiClient, namespaces: list[str], fleet: FakeFleet, interval: float = 0.3
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.fleet = fleet
        self.interval = interval
        self._ips = itertools.count(1)
        self._started: set[str] = set()  # pod uids whose process "ran"
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    async def __aenter__(self) -> FakeKubelet:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in [self._task, *self._tasks]:
            if t is not None:
                t.cancel()
        await asyncio.gather(
            *(t for t in [self._task, *self._tasks] if t is not None), return_exceptions=True
        )

    # Node ----------------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        node = await self.kube.get_or_none(NODES, NODE)
        if node is None:
            node = await self.kube.create(
                NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
            )
        now = format_time(time.time())
        node["status"] = {
            **stand_in_node_status(now),
            "capacity": {"cpu": "1000", "memory": "1000Gi", "pods": "10000"},
            "allocatable": {"cpu": "1000", "memory": "1000Gi", "pods": "10000"},
        }
        await self.kube.replace_status(NODES, node)

    async def _loop(self) -> None:
        beat = 0.0
        while True:
            try:
                if time.monotonic() - beat > 5:
                    await self.heartbeat()
                    beat = time.monotonic()
                for ns in self.namespaces:
                    await self.sync(ns)
            except Exception:  # the API server may be down: try again
                self.errors += 1
            await asyncio.sleep(self.interval)

    # Pods ----------------------------------------------------------------------------------------

    async def sync(self, ns: str) -> None:
        for pod in (await self.kube.list(PODS, ns))["items"]:
            md = pod["metadata"]
            labels = md.get("labels") or {}
            if md.get("deletionTimestamp"):
                if (pod.get("spec") or {}).get("nodeName") == NODE:
                    with contextlib.suppress(ApiError):
                        await self.kube.delete(PODS, md["name"], ns, grace_period=0)
                continue
            phase = (pod.get("status") or {}).get("phase")
            if JOB_LABEL in labels:
                if md["uid"] not in self._started:
                    self._started.add(md["uid"])
                    self._spawn(self.run_job_pod(pod))
            elif C.LABEL_CLUSTER in labels and phase not in ("Running", "Succeeded", "Failed"):
                await self.start_ray_pod(pod)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def bind(self, pod: dict[str, Any]) -> dict[str, Any]:
        md = pod["metadata"]
        if (pod.get("spec") or {}).get("nodeName"):
            return pod
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        await self.kube.request("POST", PODS.path(md["namespace"], md["name"], "binding"), body=binding)
        fresh: dict[str, Any] = await self.kube.get(PODS, md["name"], md["namespace"])
        return fresh

    async def start_ray_pod(self, pod: dict[str, Any]) -> None:
        try:
            pod = await self.bind(pod)
        except ApiError:
            return
        n = next(self._ips)
        status = running_ready_status(pod, f"10.3.{n // 250 % 250}.{n % 250 + 1}")
        body = copy.deepcopy(pod)
        body["status"] = status
        try:
            await self.kube.replace_status(PODS, body)
        except ApiError:
            return
        containers = (pod.get("spec") or {}).get("containers") or []
        sidecar = next((c for c in containers if c.get("name") == C.SUBMITTER_CONTAINER_NAME), None)
        if sidecar is not None and pod["metadata"]["uid"] not in self._started:
            self._started.add(pod["metadata"]["uid"])
            self._spawn(self.run_sidecar(pod, sidecar))

    async def _set_status(self, name: str, ns: str, edit: Any) -> bool:
        """Read the pod, change its status with `edit(pod)`, write it; False when the pod is gone."""
        for _ in range(20):
            try:
                pod = await self.kube.get_or_none(PODS, name, ns)
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    return False
                edit(pod)
                await self.kube.replace_status(PODS, pod)
                return True
            except Exception:
                await asyncio.sleep(1)
        return False

    async def _wait_terminal(self, cluster: str, sid: str, name: str, ns: str) -> str:
        """Follow a Ray job until it ends (or its pod goes away: then "")."""
        while True:
            job = self.fleet.job(cluster, sid)
            if job is not None and job.status in TERMINAL:
                return job.status
            try:
                pod = await self.kube.get_or_none(PODS, name, ns)
            except Exception:
                pod = {}
            if pod is None or (pod and pod["metadata"].get("deletionTimestamp")):
                return ""
            await asyncio.sleep(0.5)

    async def _submit(self, cluster: str, sid: str, entrypoint: str) -> bool:
        """A submission through the fleet's HTTP API, as `ray job submit` sends it."""
        from rayop.ray.dashboard import DashboardClient, DashboardError

        async with DashboardClient.direct(f"{self.fleet.url}/c/{cluster}") as c:
            try:
                await c.submit_job({"entrypoint": entrypoint, "submission_id": sid})
                return True
            except DashboardError:
                return False

    async def run_job_pod(self, pod: dict[str, Any]) -> None:
        md = pod["metadata"]
        name, ns = md["name"], md["namespace"]
        containers = (pod.get("spec") or {}).get("containers") or []
        env = env_of(containers[0]) if containers else {}
        sid = env.get("RAY_JOB_SUBMISSION_ID", "")
        if not sid:  # a Redis cleanup Job: done at once
            await asyncio.sleep(0.5)
            await self._set_status(name, ns, lambda p: p.update(status=terminated_status(p, 0)))
            return
        cluster = (
            env.get("RAY_DASHBOARD_ADDRESS", "")
            .split("://", 1)[-1]
            .split(".", 1)[0]
            .removesuffix("-head-svc")
        )
        script = " ".join(containers[0].get("args") or [])
        await self._set_status(name, ns, lambda p: p.update(status=running_ready_status(p)))
        if self.fleet.job(cluster, sid) is None:  # `ray job status <id>` failed: submit
            await self._submit(cluster, sid, entrypoint_of(script))
        if await self._wait_terminal(cluster, sid, name, ns):
            await self._set_status(name, ns, lambda p: p.update(status=terminated_status(p, 0)))

    async def run_sidecar(self, pod: dict[str, Any], sidecar: dict[str, Any]) -> None:
        md = pod["metadata"]
        name, ns = md["name"], md["namespace"]
        cluster = (md.get("labels") or {}).get(C.LABEL_CLUSTER, "")
        sid = env_of(sidecar).get("RAY_JOB_SUBMISSION_ID", "")
        script = " ".join(sidecar.get("args") or [])
        code = 1
        if await self._submit(cluster, sid, entrypoint_of(script)):
            outcome = await self._wait_terminal(cluster, sid, name, ns)
            if not outcome:
                return
            code = 0 if outcome == "SUCCEEDED" else 1
        now = format_time(time.time())

        def edit(p: dict[str, Any]) -> None:
            for cs in (p.get("status") or {}).get("containerStatuses") or []:
                if cs.get("name") == C.SUBMITTER_CONTAINER_NAME:
                    cs["ready"] = False
                    cs["started"] = False
                    cs["state"] = {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    }

        await self._set_status(name, ns, edit)
