"""Ray's autoscaler and the Kubernetes HPA on the local plane, for real: the two runs of
tests/e2e/test_hpa_ray.py, which asserts their outcome, and of bench/hpa_timeline.py, which plots them.

Everything is real: kube-controller-manager's HPA controller, metrics-server behind metrics.k8s.io reading
the node agent's `/metrics/resource` (CPU from each Pod's cgroups), Ray 2.60 from PyPI in Pods run as
processes, Ray's autoscaler in the head Pod, and `rayop operator` as its own process.

- `worker_group_run`: examples/hpa-rayworkergroup.yaml (no Ray autoscaler). A driver in the head Pod keeps
  one CPU-burning task per worker busy; the HPA raises the RayWorkerGroup to its maximum; when the driver
  stops, the HPA lowers it again and rayop removes the workers, each drained in Ray first.
- `serve_run`: examples/hpa-serve.yaml (Ray's autoscaler on). Requests through the serve Service cost CPU
  in the Serve deployment's replicas; the HPA raises the RayServeDeployment, Serve's new replica is pending
  until Ray's autoscaler adds a worker Pod for it; when the load drops, the HPA lowers the replicas and
  Ray's autoscaler removes the idle Pod. A light load keeps running through the scale-down, so every
  request of the run counts.

Both are sized for a loaded 2-core machine: CPU limits are not enforced on the local plane, so requests
are small (200m / 350m) and the load is a fixed amount of CPU time per task or request (`thread_time`),
which a busy machine delays but does not shrink. A `Recorder` samples, every 2 s, what each part saw: the
HPA's metric and decisions, the scale target's spec and status, the Pods, and Ray's alive nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rayop.api.kinds import RAYCLUSTERS, RAYSERVEDEPLOYMENTS, RAYSERVICES, RAYWORKERGROUPS
from rayop.base.resource import Resource
from rayop.controllers.podplan import is_running_and_ready
from rayop.local import metrics_server
from rayop.node import containers
from rayop.node.locate import locate
from rayop.ray.dashboard import DashboardClient
from rayop.runtime.client import CONFIGMAPS, EVENTS, PODS, ApiClient, ApiError, load_kubeconfig
from tests import rbac
from tests.e2e.serve_load import Load, OperatorProcess, steady_load
from tests.helpers import eventually
from tests.nodes import (
    new_namespace,
    node_network,
    start_agent,
    start_node_plane,
    stop_agent,
    stop_node_plane,
)

REPO = Path(__file__).resolve().parents[2]
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", kind="HorizontalPodAutoscaler")
POD_METRICS = Resource("metrics.k8s.io", "v1beta1", "pods", kind="PodMetrics")

# The HPA controller's evaluation period on this plane (upstream: 15 s; docs/local-plane.md).
HPA_SYNC = "5s"
SAMPLE_SECONDS = 2.0
# Scale-down waits this long at low CPU (the examples wait 60 s; the controller's default is 5 minutes).
STABILIZATION_SECONDS = 30
# Ray's autoscaler removes a worker idle this long (the example: 60 s).
IDLE_SECONDS = 20

# The worker-group run: each worker holds one task that burns BURN_DUTY of a core in short slices.
RWG_MAX = 3
WORKER_CPU_REQUEST = "200m"
BURN_DUTY = 0.35
# The Serve run: SERVE_RATE requests/s of CPU_MS each is about 0.25 core: with an idle Pod's own use
# (see below) over 80 % of one Pod's 350m request, about half that on two Pods, so the HPA settles at 2
# replicas. The light load during scale-down is a twentieth of that. An idle Serve worker Pod (raylet,
# agents, the replica) uses ~45m on a quiet machine and up to ~85m on a busy host, and the HPA goes from 2
# Pods to 1 only below 30 % of the request (half the 60 % target): with a 250m request and a light load of
# 2 requests/s the margin was 2 points, and a busy host's Pods kept it at 2. More requests per second or
# more CPU per request overloaded the single replica before the scale-up on a busy host.
SERVE_MAX = 2
SERVE_CPU_REQUEST = "350m"
SERVE_RATE = 10.0
LIGHT_RATE = 0.5
CPU_MS = 25

HOLD_SECONDS = 20.0  # how long the scaled-up state is watched before the load stops
T_START = 420.0  # a cluster's start on a busy 2-core machine
T_SCALE = 240.0  # metrics (two scrapes), the HPA's sync, a new Pod starting Ray
T_DOWN = 300.0  # the stabilization window, the HPA's sync, draining, Ray's idle timeout


# The world both runs need ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def world(prefix: str = "hpa") -> AsyncIterator[tuple[ApiClient, str]]:
    """A control plane (kube-controller-manager's HPA controller evaluating every HPA_SYNC), the node agent,
    metrics-server on it, a namespace, and `rayop operator` watching it as the chart's RBAC lets it."""
    net = node_network(prefix)
    plane = await asyncio.to_thread(start_node_plane, net, hpa={"sync-period": HPA_SYNC})
    try:
        operator_kubeconfig = rbac.enable(plane)
        state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
        # Ray 2.60 turns token auth on when ~/.ray/auth_token exists, and pods share this host's home.
        env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        agent, task = await start_agent(plane, net, state, cpu="16", memory="32Gi", default_env=env)
        kube = ApiClient(load_kubeconfig(plane.kubeconfig))
        op: OperatorProcess | None = None
        try:
            await asyncio.to_thread(metrics_server.install, plane)
            ns = await new_namespace(kube, prefix)
            log = Path(tempfile.mkdtemp(prefix=f"rayop-{prefix}-")) / "operator.log"
            op = OperatorProcess(operator_kubeconfig, ns, log)
            op.start()
            yield kube, ns
        finally:
            if op is not None:
                op.stop()
            await kube.close()
            leftovers = await stop_agent(agent, task)
            shutil.rmtree(state, ignore_errors=True)
            if leftovers:
                raise AssertionError(f"netns left behind: {leftovers}")
    finally:
        await asyncio.to_thread(stop_node_plane, plane)


# What was seen ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    utilization: int | None  # the HPA's status.currentMetrics (% of requests)
    desired: int | None  # the HPA's status.desiredReplicas
    spec: int | None  # the scale target's spec.replicas (what the HPA wrote)
    replicas: int | None  # the scale target's status.replicas (worker replicas, or Serve replicas)
    ready: int | None  # ... status.readyReplicas
    pods: int  # worker Pods of the group (not terminating)
    ready_pods: int
    ray_nodes: int | None  # Ray's alive worker nodes
    pod_cpu: dict[str, int] = field(default_factory=dict)  # metrics.k8s.io, millicores per Pod
    phase: str = ""


@dataclass
class Timeline:
    name: str
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # phase -> seconds since the run started
    decisions: list[tuple[float, str]] = field(default_factory=list)  # the HPA's SuccessfulRescale events
    notes: list[tuple[float, str, str]] = field(default_factory=list)  # the scale target's events
    load: str = ""
    failed_requests: int | None = None

    def mark(self, what: str, t: float) -> None:
        self.marks.setdefault(what, round(t, 1))

    def max_of(self, attr: str) -> int:
        return max((getattr(s, attr) or 0 for s in self.samples), default=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "marks": self.marks,
            "decisions": self.decisions,
            "notes": self.notes,
            "load": self.load,
            "failed_requests": self.failed_requests,
            "samples": [s.__dict__ for s in self.samples],
        }


def _cpu_millis(text: str) -> int:
    if text.endswith("n"):
        return int(text[:-1]) // 1_000_000
    if text.endswith("u"):
        return int(text[:-1]) // 1000
    if text.endswith("m"):
        return int(text[:-1])
    return int(float(text) * 1000)


class Recorder:
    """Samples the HPA, the scale target, the group's Pods and Ray's nodes every SAMPLE_SECONDS."""

    def __init__(
        self,
        kube: ApiClient,
        ns: str,
        timeline: Timeline,
        *,
        hpa: str,
        target: Resource,
        target_name: str,
        pod_selector: str,
        head_service: Callable[[], Awaitable[str]],
    ) -> None:
        self.kube, self.ns, self.tl = kube, ns, timeline
        self.hpa, self.target, self.target_name = hpa, target, target_name
        self.pod_selector = pod_selector
        self.head_service = head_service
        self.t0 = time.monotonic()
        self.phase = "start"
        self.last: Sample | None = None
        self._seen_events: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str) -> None:
        self.phase = what
        self.tl.mark(what, self.now())

    async def _ray_nodes(self) -> int | None:
        try:
            svc = await self.head_service()
            dash = DashboardClient.via_proxy(self.kube, self.ns, svc)
            try:
                nodes = await dash.list_alive_nodes()
            finally:
                await dash.close()
        except Exception:
            return None
        # The head is a node too; count workers only (the head advertises no CPU here).
        return sum(1 for n in nodes if not n.get("is_head_node"))

    async def sample(self) -> Sample:
        hpa = await self.kube.get_or_none(HPAS, self.hpa, self.ns)
        hst = (hpa or {}).get("status") or {}
        util = None
        for m in hst.get("currentMetrics") or []:
            util = ((m.get("resource") or {}).get("current") or {}).get("averageUtilization")
        tgt = await self.kube.get_or_none(self.target, self.target_name, self.ns) or {}
        tst = tgt.get("status") or {}
        pods = (await self.kube.list(PODS, self.ns, label_selector=self.pod_selector))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = sum(
            1
            for p in live
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        cpu: dict[str, int] = {}
        with contextlib.suppress(ApiError):
            for m in (await self.kube.list(POD_METRICS, self.ns, label_selector=self.pod_selector))["items"]:
                cpu[m["metadata"]["name"]] = sum(
                    _cpu_millis(c["usage"]["cpu"]) for c in m.get("containers") or []
                )
        s = Sample(
            t=round(self.now(), 1),
            utilization=util,
            desired=hst.get("desiredReplicas"),
            spec=(tgt.get("spec") or {}).get("replicas"),
            replicas=tst.get("replicas"),
            ready=tst.get("readyReplicas"),
            pods=len(live),
            ready_pods=ready,
            ray_nodes=await self._ray_nodes(),
            pod_cpu=cpu,
            phase=self.phase,
        )
        self.tl.samples.append(s)
        self.last = s
        await self._events()
        return s

    async def _pods_now(self) -> list[str]:
        """Each Pod of the group as a line: readiness, restarts and how its containers last ended."""
        lines = []
        with contextlib.suppress(Exception):
            for p in (await self.kube.list(PODS, self.ns, label_selector=self.pod_selector))["items"]:
                st = p.get("status") or {}
                parts = [f"{p['metadata']['name']} phase={st.get('phase')} ready={is_running_and_ready(p)}"]
                if p["metadata"].get("deletionTimestamp"):
                    parts.append("terminating")
                for cs in st.get("containerStatuses") or []:
                    parts.append(
                        f"{cs.get('name')}: restarts={cs.get('restartCount')} state={cs.get('state')} "
                        f"last={cs.get('lastState')}"
                    )
                lines.append(" ".join(parts))
        return lines

    async def _events(self) -> None:
        for e in (await self.kube.list(EVENTS, self.ns))["items"]:
            uid = e["metadata"].get("uid", "")
            if uid in self._seen_events:
                continue
            regarding = e.get("regarding") or {}
            note = e.get("note") or ""
            if regarding.get("kind") == "HorizontalPodAutoscaler" and regarding.get("name") == self.hpa:
                self._seen_events.add(uid)
                if e.get("reason") == "SuccessfulRescale":
                    self.tl.decisions.append((round(self.now(), 1), note))
                else:
                    self.tl.notes.append((round(self.now(), 1), str(e.get("reason")), note))
            elif regarding.get("name") == self.target_name:
                self._seen_events.add(uid)
                self.tl.notes.append((round(self.now(), 1), str(e.get("reason")), note))

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    async def until(self, pred: Callable[[Sample], bool], timeout: float, what: str) -> Sample:
        """Wait until a fresh sample satisfies `pred`; on timeout, say what the last sample was."""

        async def check() -> Sample | None:
            s = await self.sample()
            return s if pred(s) else None

        try:
            res: Sample = await eventually(check, timeout, SAMPLE_SECONDS, what=what)
        except AssertionError as e:
            raise AssertionError(
                f"{e}\nlast sample: {self.last}\nHPA decisions: {self.tl.decisions}\n"
                f"{self.tl.name} events: {self.tl.notes}\npods: {await self._pods_now()}"
            ) from None
        self.mark(what)
        return res

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# Manifests, from the examples ------------------------------------------------------------------------------


def example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO / "examples" / name).read_text()) if d]


def _requests(container: dict[str, Any], cpu: str) -> None:
    res = container.setdefault("resources", {})
    for k in ("requests", "limits"):
        res.setdefault(k, {})["cpu"] = cpu


def _hpa(doc: dict[str, Any], ns: str, max_replicas: int) -> dict[str, Any]:
    hpa = copy.deepcopy(doc)
    hpa["metadata"]["namespace"] = ns
    hpa["spec"]["maxReplicas"] = max_replicas
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = STABILIZATION_SECONDS
    return hpa


# The worker-group run ----------------------------------------------------------------------------------------

BURN_DRIVER = """
import os, sys, time, ray
duty, stop = float(sys.argv[1]), sys.argv[2]
ray.init()

@ray.remote(num_cpus=1)
def burn(seconds):
    end = time.time() + seconds
    while time.time() < end:
        busy = time.thread_time() + 0.02 * duty
        while time.thread_time() < busy:
            pass
        time.sleep(0.02 * (1 - duty))
    return 1

# One task per worker CPU, and always one more queued, so a new worker gets work as soon as it joins.
running = []
done = 0
while not os.path.exists(stop):
    while len(running) < int(ray.cluster_resources().get("CPU", 0)) + 1:
        running.append(burn.remote(3.0))
    ready, running = ray.wait(running, num_returns=1, timeout=1.0)
    done += len(ready)
print("BURNED", done, flush=True)
"""


async def _head_exec(kube: ApiClient, ns: str, selector: str, container: str) -> tuple[int, Path]:
    heads = (await kube.list(PODS, ns, label_selector=selector))["items"]
    loc = await locate(kube, ns, heads[0]["metadata"]["name"], container)
    return loc.pid, loc.spec_path


async def worker_group_run(kube: ApiClient, ns: str) -> Timeline:
    """The HPA sizes a worker group under a CPU-burning Ray workload, then lets it shrink."""
    docs = example("hpa-rayworkergroup.yaml")
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    hpa = _hpa(next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler"), ns, RWG_MAX)
    name = rc["metadata"]["name"]
    group = rc["spec"]["workerGroupSpecs"][0]
    group["maxReplicas"] = RWG_MAX
    _requests(group["template"]["spec"]["containers"][0], WORKER_CPU_REQUEST)
    rc["metadata"]["namespace"] = ns
    rwg = hpa["spec"]["scaleTargetRef"]["name"]
    tl = Timeline("worker group (RayWorkerGroup, no Ray autoscaler)")
    selector = f"ray.io/cluster={name},ray.io/group={group['groupName']},ray.io/node-type=worker"

    async def head_svc() -> str:
        return f"{name}-head-svc"

    rec = Recorder(
        kube,
        ns,
        tl,
        hpa=hpa["metadata"]["name"],
        target=RAYWORKERGROUPS,
        target_name=rwg,
        pod_selector=selector,
        head_service=head_svc,
    )
    await kube.create(RAYCLUSTERS, rc, ns)
    async with rec:
        await rec.until(lambda s: s.ready == 1 and s.ray_nodes == 1, T_START, "1 worker ready")
        await kube.create(HPAS, hpa, ns)
        await rec.until(lambda s: s.utilization is not None, T_SCALE, "HPA sees the CPU")
        pid, spec_path = await _head_exec(
            kube, ns, f"ray.io/cluster={name},ray.io/node-type=head", "ray-head"
        )
        stop = "/tmp/rayop-stop-burn"
        driver = asyncio.create_task(
            containers.exec_in(pid, spec_path, ["python", "-c", BURN_DRIVER, str(BURN_DUTY), stop], 1800)
        )
        rec.mark("load on")
        try:
            await rec.until(lambda s: (s.spec or 0) > 1, T_SCALE, "HPA scales up")
            await rec.until(
                lambda s: s.ready == RWG_MAX and s.ray_nodes == RWG_MAX, T_SCALE, f"{RWG_MAX} workers in Ray"
            )
            await asyncio.sleep(HOLD_SECONDS)
        finally:
            await containers.exec_in(pid, spec_path, ["touch", stop], 60)
            rec.mark("load off")
            code, out = await asyncio.wait_for(driver, 120)
            text = out.decode(errors="replace")
            # The driver's last word is its count; Ray's autoscaler messages about the always-queued extra
            # task (no room for it, by design) come before it.
            burned = [ln.split()[1] for ln in text.splitlines() if ln.startswith("BURNED ")]
            tl.load = f"{burned[-1]} CPU-burning tasks of 3 s finished" if burned else text.strip()[-300:]
        if code != 0:
            raise AssertionError(f"the burn driver exited with {code}: {tl.load}")
        await rec.until(lambda s: s.spec == 1, T_DOWN, "HPA scales down")
        await rec.until(lambda s: s.pods == 1 and s.ray_nodes == 1, T_DOWN, "1 worker left")
        await rec.sample()
    await kube.delete(HPAS, hpa["metadata"]["name"], ns)
    await kube.delete(RAYCLUSTERS, name, ns)
    return tl


# The Serve run -----------------------------------------------------------------------------------------------


async def serve_run(kube: ApiClient, ns: str) -> Timeline:
    """The HPA sizes a Serve deployment under request load while Ray's autoscaler sizes the cluster."""
    docs = example("hpa-serve.yaml")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    rs = next(d for d in docs if d["kind"] == "RayService")
    hpa = _hpa(next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler"), ns, SERVE_MAX)
    for d in (cm, rs):
        d["metadata"]["namespace"] = ns
    name = rs["metadata"]["name"]
    cfg = rs["spec"]["rayClusterConfig"]
    cfg["autoscalerOptions"]["idleTimeoutSeconds"] = IDLE_SECONDS
    group = cfg["workerGroupSpecs"][0]
    group["maxReplicas"] = SERVE_MAX
    _requests(group["template"]["spec"]["containers"][0], SERVE_CPU_REQUEST)
    rs["spec"]["serveConfigV2"] = rs["spec"]["serveConfigV2"].replace("cpu_ms: 25", f"cpu_ms: {CPU_MS}")
    rs["spec"]["rayClusterDeletionDelaySeconds"] = 5
    rsd = hpa["spec"]["scaleTargetRef"]["name"]
    tl = Timeline("Serve deployment (RayServeDeployment, Ray autoscaler on)")

    async def active() -> str:
        obj = await kube.get(RAYSERVICES, name, ns)
        return str(((obj.get("status") or {}).get("activeServiceStatus") or {}).get("rayClusterName") or "")

    async def head_svc() -> str:
        return f"{await active()}-head-svc"

    await kube.create(CONFIGMAPS, cm, ns)
    await kube.create(RAYSERVICES, rs, ns)
    rec = Recorder(
        kube,
        ns,
        tl,
        hpa=hpa["metadata"]["name"],
        target=RAYSERVEDEPLOYMENTS,
        target_name=rsd,
        pod_selector="ray.io/node-type=worker",
        head_service=head_svc,
    )
    svc = f"{name}-serve-svc"
    loads: list[Load] = []
    async with rec:
        await rec.until(
            lambda s: s.spec == 1 and s.ready == 1 and s.ready_pods == 1, T_START, "Serve ready, 1 replica"
        )
        cluster = await active()
        rec.pod_selector = (
            f"ray.io/cluster={cluster},ray.io/group={group['groupName']},ray.io/node-type=worker"
        )
        target = await kube.get(RAYSERVEDEPLOYMENTS, rsd, ns)
        if target["status"].get("selector") != rec.pod_selector:
            raise AssertionError(
                f"{rsd} selects {target['status'].get('selector')!r}, not {rec.pod_selector!r}"
            )
        await kube.create(HPAS, hpa, ns)
        await rec.until(lambda s: s.utilization is not None, T_SCALE, "HPA sees the CPU")
        async with _loads(kube, ns, svc, loads, SERVE_RATE):
            rec.mark("load on")
            await rec.until(lambda s: (s.spec or 0) > 1, T_SCALE, "HPA scales up")
            await rec.until(lambda s: (s.replicas or 0) > 1, T_SCALE, "Serve starts a replica")
            await rec.until(
                lambda s: s.ready == SERVE_MAX and s.ready_pods == SERVE_MAX and s.ray_nodes == SERVE_MAX,
                T_SCALE,
                f"{SERVE_MAX} replicas on {SERVE_MAX} Pods",
            )
            await asyncio.sleep(HOLD_SECONDS)
        async with _loads(kube, ns, svc, loads, LIGHT_RATE):
            rec.mark("load off")
            await rec.until(lambda s: s.spec == 1, T_DOWN, "HPA scales down")
            await rec.until(lambda s: s.replicas == 1, T_DOWN, "Serve stops a replica")
            await rec.until(
                lambda s: s.pods == 1 and s.ray_nodes == 1, T_DOWN, "Ray's autoscaler removes the Pod"
            )
        await rec.sample()
    tl.failed_requests = sum(x.failed for x in loads)
    tl.load = "; ".join(x.summary() for x in loads)
    await kube.delete(HPAS, hpa["metadata"]["name"], ns)
    await kube.delete(RAYSERVICES, name, ns)
    return tl


@contextlib.asynccontextmanager
async def _loads(kube: ApiClient, ns: str, svc: str, loads: list[Load], rate: float) -> AsyncIterator[Load]:
    async with steady_load(kube, ns, svc, rate=rate) as load:
        loads.append(load)
        yield load


def dump(timelines: list[Timeline], path: Path) -> None:
    path.write_text(json.dumps([t.to_json() for t in timelines], indent=1))
