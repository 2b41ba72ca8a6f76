"""What the scale benchmarks share: process CPU and memory from /proc, the API server's write counts, a
pod watch that counts (and, acting as kubelet, finishes deleting) pods, the bench's stand-in for the
scheduler and kubelet, and the plane housekeeping between runs.

Used by bench/raycluster_scale.py (operator against a plain client) and bench/kuberay_peer.py (rayop
against KubeRay).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from rayop.api.kinds import RAYCLUSTERS
from rayop.local.plane import ControlPlane
from rayop.runtime.client import NAMESPACES, NODES, PODS, ApiClient, ApiError
from tests.integration.rayclusters import running_ready_status

CLK_TCK = os.sysconf("SC_CLK_TCK")
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS MiB, CPU seconds) of a live process."""
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return hwm, cpu


def rss_mib(pid: int) -> float:
    """Current RSS of a live process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests (all CPUs): the machine's own noise."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / CLK_TCK


def busy_seconds() -> float:
    """CPU time all processes on the machine used (user + nice + system + irq + softirq), all CPUs."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / CLK_TCK


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class CpuMeter:
    """CPU seconds used by each control-plane process, the operator, this bench and the whole machine
    between two points."""

    def __init__(self, plane: ControlPlane, operator_pid: int | None = None) -> None:
        self.pids = {name: p.pid for name, p in plane.procs.items()}
        if operator_pid is not None:
            self.pids["operator"] = operator_pid
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        out = {name: proc_stats(pid)[1] for name, pid in self.pids.items()}
        out["bench"] = time.process_time()
        out["steal"] = steal_seconds()
        out["machine"] = busy_seconds()
        return out

    def used(self) -> dict[str, float]:
        now = self._sample()
        return {k: now[k] - self.start[k] for k in now}


_LABEL = re.compile(r'(\w+)="([^"]*)"')


async def api_writes(kube: ApiClient) -> dict[str, float]:
    """The API server's own count of write requests so far, by verb and resource."""
    text = await kube.request("GET", "/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(_LABEL.findall(line))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        sub = labels.get("subresource")
        key = f"{labels['verb']} {labels.get('resource')}{'/' + sub if sub else ''}"
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def writes_between(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    diff = {k: int(v - before.get(k, 0)) for k, v in after.items()}
    return {k: v for k, v in sorted(diff.items(), key=lambda kv: -kv[1]) if v > 0}


class PodCounter:
    """Counts live pods of a namespace through one watch (cheap next to re-listing thousands of pods).

    With `reap`, it also acts as the kubelet at the end of a pod's life: a pod the API server marked
    for deletion (a bound pod waits for its kubelet's confirmation) is deleted with grace period 0."""

    def __init__(self, kube: ApiClient, ns: str, selector: str, *, reap: bool = True) -> None:
        self.kube, self.ns, self.selector = kube, ns, selector
        self.pods: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.reap = reap
        self._reaping: set[str] = set()
        self._reapers: set[asyncio.Task[None]] = set()
        self._reap_sem = asyncio.Semaphore(32)
        self.created_total = 0  # distinct pod names ever seen

    async def start(self) -> None:
        first = await self.kube.list(PODS, self.ns, label_selector=self.selector)
        for p in first["items"]:
            self._put(p)
        rv = first["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._run(rv))

    def _put(self, p: dict[str, Any]) -> None:
        name = p["metadata"]["name"]
        if name not in self.pods:
            self.created_total += 1
        self.pods[name] = p
        self.changed.set()
        if self.reap and p["metadata"].get("deletionTimestamp") and name not in self._reaping:
            self._reaping.add(name)
            t = asyncio.create_task(self._finish_delete(name))
            self._reapers.add(t)
            t.add_done_callback(self._reapers.discard)

    async def _finish_delete(self, name: str) -> None:
        async with self._reap_sem:
            with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
                await self.kube.request("DELETE", PODS.path(self.ns, name), params={"gracePeriodSeconds": 0})

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for ev in self.kube.watch(
                    PODS, self.ns, resource_version=rv, label_selector=self.selector
                ):
                    obj = ev["object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if ev["type"] == "BOOKMARK":
                        continue
                    if ev["type"] == "DELETED":
                        self.pods.pop(obj["metadata"]["name"], None)
                        self._reaping.discard(obj["metadata"]["name"])
                        self.changed.set()
                    else:
                        self._put(obj)
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2)

    async def wait_until(self, pred: Any, what: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not pred():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: {len(self.pods)} pods after {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return time.monotonic()

    async def wait_count(self, n: int, timeout: float) -> float:
        return await self.wait_until(lambda: len(self.pods) >= n, f"waiting for {n} pods", timeout)

    async def wait_empty(self, timeout: float) -> float:
        return await self.wait_until(lambda: not self.pods, "waiting for all pods to go", timeout)

    def not_ready(self) -> list[dict[str, Any]]:
        """Live pods the bench has not yet marked Running."""
        return [
            p
            for p in self.pods.values()
            if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") != "Running"
        ]

    async def stop(self) -> None:
        tasks = [t for t in (self.task, *self._reapers) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def mark_all_ready(
    kube: ApiClient, pods: list[dict[str, Any]], node: str, concurrency: int, first_ip: int = 0
) -> None:
    """Act as scheduler and kubelet: bind every pod to `node`, then report it Running and Ready.

    Binding matters: the Endpoints controller rejects a ready address without a node name and retries
    such Services for minutes, which would land as noise in every later measurement."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, p: dict[str, Any]) -> None:
        name, ns = p["metadata"]["name"], p["metadata"]["namespace"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        body = copy.deepcopy(p)
        body["spec"]["nodeName"] = node
        body["metadata"].pop("resourceVersion", None)  # pods accept unconditional status updates
        body["status"] = running_ready_status(p, f"10.{i // 62500}.{(i // 250) % 250}.{i % 250 + 1}")
        async with sem:
            await kube.request("POST", PODS.path(ns, name, "binding"), body=binding)
            await kube.replace_status(PODS, body)

    await asyncio.gather(*(one(first_ip + i, p) for i, p in enumerate(pods)))


async def create_node(kube: ApiClient, name: str) -> None:
    """A Node for the bench's pods, so the pod garbage collector does not remove them as orphans."""
    with contextlib.suppress(ApiError):
        await kube.create(
            NODES,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"rayop.io/bench": "true"}},
            },
        )


async def wait_all_ready(kube: ApiClient, ns: str, n: int, timeout: float) -> float:
    """Wait until `n` RayClusters report `status.state: ready` with as many ready workers as their spec
    asks for (after a scale-up, a cluster stays `ready` while its new workers start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = (await kube.list(RAYCLUSTERS, ns))["items"]
        if sum(1 for rc in items if _ready_for_spec(rc)) >= n:
            return time.monotonic()
        await asyncio.sleep(0.25)
    raise TimeoutError(f"RayClusters not all ready after {timeout} s")


def _ready_for_spec(rc: dict[str, Any]) -> bool:
    want = sum(int(g.get("replicas") or 0) for g in rc["spec"].get("workerGroupSpecs") or [])
    st = rc.get("status") or {}
    return st.get("state") == "ready" and int(st.get("readyWorkerReplicas") or 0) >= want


async def drop_namespace(kube: ApiClient, ns: str, timeout: float) -> None:
    """Delete a namespace and wait until the namespace controller has removed it and its objects."""
    # Bound pods wait for a kubelet to confirm their end; there is none, so they go at once.
    with contextlib.suppress(ApiError):
        await kube.request("DELETE", PODS.path(ns), params={"gracePeriodSeconds": 0})
    with contextlib.suppress(ApiError):
        await kube.delete(NAMESPACES, ns)
    deadline = time.monotonic() + timeout
    while await kube.get_or_none(NAMESPACES, ns) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {ns} still there after {timeout} s")
        await asyncio.sleep(0.5)


async def settle(kube: ApiClient, quiet: float = 2.0, timeout: float = 120.0) -> None:
    """Wait until the API server has taken no write for `quiet` seconds: deleting a namespace leaves the
    controller manager with Endpoints to delete well after the namespace is gone, and that work would
    land in the next measurement."""
    deadline = time.monotonic() + timeout
    last = await api_writes(kube)
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)
        now = await api_writes(kube)
        # The controller manager renews its leader Lease every couple of seconds; that is not work.
        moved = {k for k, v in now.items() if v != last.get(k) and "leases" not in k}
        if moved:
            still_since = time.monotonic()
        last = now


async def scrape(port: int, prefix: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric family from an operator's /metrics endpoint."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    out = []
    for line in text.splitlines():
        if line.startswith(prefix + "{"):
            labels, value = line.rsplit(" ", 1)
            out.append((dict(_LABEL.findall(labels)), float(value)))
    return out


async def scrape_requests(port: int) -> dict[str, int]:
    """The operator's API requests so far, by method (rest_client_requests_total)."""
    out: dict[str, int] = {}
    for labels, value in await scrape(port, "rest_client_requests_total"):
        method = labels.get("method", "")
        out[method] = out.get(method, 0) + int(value)
    return out


async def wait_http_ok(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def fmt(x: float) -> str:
    return f"{x:.1f}"
