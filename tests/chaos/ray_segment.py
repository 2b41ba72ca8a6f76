"""The campaign's real-Ray segment: two RayClusters of real Ray processes run by the node agent (`rayop node`,
its own process), and faults on the node: the agent SIGKILLed and restarted (it must re-adopt the running
pods: same pod uids, no container restarted), a pod's container process SIGKILLed (the container
restarts and Ray rejoins), and the Ray head killed with GCS fault tolerance off and on.

- `chaos-ray`: no GCS fault tolerance, 0-2 workers scaled autoscaler-style. A head killed loses the
  cluster's state; the workers' raylets find a GCS that does not know them, exit, and their containers
  start again and join the new head.
- `chaos-ft`: GCS fault tolerance on Redis (Debian's `redis-server`, run as a Pod by the node agent; a
  Service `redis` in front of it), one worker. A head killed comes back with its state: a Ray job
  submitted once at the start (the canary) must still be listed, SUCCEEDED, after every fault, and the
  worker's raylet reconnects without restarting. At the end the cluster is deleted: the operator's Redis
  cleanup Job runs against the real Redis before the finalizer lets the RayCluster go.

Needs root and iproute2, as the e2e tier does.

The operator is `rayop operator` itself, reaching each head's dashboard through the API server's service
proxy (`--use-kubernetes-proxy`), since the host has no cluster DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from rayop.api.kinds import RAYCLUSTERS
from rayop.base.times import parse_timestamp
from rayop.local.plane import ControlPlane, PlaneOptions
from rayop.node.locate import locate
from rayop.ray.dashboard import DashboardClient, DashboardError, DuplicateSubmission
from rayop.runtime.client import LEASES, PODS, SERVICES, ApiClient, load_kubeconfig
from tests import nodes, rbac
from tests.chaos import invariants as inv
from tests.chaos.invariants import Checker, Snapshot, Violation, alive, labels, running_ready
from tests.chaos.procs import Operators, OperatorSpec, Proc
from tests.chaos.workload import StepLog, live

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "chaos-ray"
FT_CLUSTER = "chaos-ft"
CLUSTERS = (CLUSTER, FT_CLUSTER)
REDIS = "redis"
CANARY = "chaos-ft-canary"  # the submission id of the job whose record must survive a head kill


def cluster_manifest(ns: str) -> dict[str, Any]:
    rc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "raycluster.yaml").read_text())
    rc["metadata"] = {"name": CLUSTER, "namespace": ns}
    g = rc["spec"]["workerGroupSpecs"][0]
    g.update(replicas=1, minReplicas=0, maxReplicas=2)
    return rc


def ft_cluster_manifest(ns: str) -> dict[str, Any]:
    rc = cluster_manifest(ns)
    rc["metadata"]["name"] = FT_CLUSTER
    rc["spec"]["gcsFaultToleranceOptions"] = {"redisAddress": f"{REDIS}:6379"}
    rc["spec"]["workerGroupSpecs"][0].update(replicas=1, minReplicas=1, maxReplicas=1)
    return rc


def redis_manifests(ns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Debian's redis-server as a Pod (the node agent runs it from the host's /usr/bin; there are no
    images) and the Service the FT cluster's head reaches it by. Nothing is saved to disk: Redis stays
    up through the campaign (its own loss is not a fault here)."""
    lbl = {"app": REDIS}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": REDIS, "namespace": ns, "labels": lbl},
        "spec": {
            "containers": [
                {
                    "name": "redis",
                    "image": "redis:7",
                    "command": ["redis-server", "--port", "6379", "--bind", "0.0.0.0"],
                    "args": ["--protected-mode", "no", "--save", "", "--appendonly", "no"],
                    "ports": [{"name": "redis", "containerPort": 6379}],
                    "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 2},
                }
            ]
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": REDIS, "namespace": ns},
        "spec": {"selector": lbl, "ports": [{"name": "redis", "port": 6379, "targetPort": 6379}]},
    }
    return pod, svc


class RayWorkload:
    """Autoscaler-style scaling of `chaos-ray`'s worker group between 0 and 2 workers (`chaos-ft` keeps its
    one worker: its worker must be there to show a raylet riding out a head restart)."""

    def __init__(self, kube: ApiClient, ns: str) -> None:
        self.kube, self.ns = kube, ns

    async def setup(self) -> None:
        pod, svc = redis_manifests(self.ns)
        await self.kube.create(SERVICES, svc, self.ns)
        await self.kube.create(PODS, pod, self.ns)
        # The head's GCS gives up when Redis does not answer: start it once Redis is Ready (the Service's
        # endpoints, and so the pods' /etc/hosts, follow readiness).
        t0 = time.monotonic()
        while not running_ready(await self.kube.get(PODS, REDIS, self.ns)):
            if time.monotonic() - t0 > 120:
                raise TimeoutError("the redis pod never became Ready")
            await asyncio.sleep(0.5)
        await self.kube.create(RAYCLUSTERS, cluster_manifest(self.ns), self.ns)
        await self.kube.create(RAYCLUSTERS, ft_cluster_manifest(self.ns), self.ns)

    async def step(self, rng: random.Random) -> StepLog:
        log = StepLog()
        try:
            rc = await self.kube.get(RAYCLUSTERS, CLUSTER, self.ns)
            g = rc["spec"]["workerGroupSpecs"][0]
            cur, want = int(g.get("replicas") or 0), rng.randint(0, 2)
            patch: list[dict[str, Any]] = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": rc["metadata"]["resourceVersion"],
                },
                {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": want},
            ]
            if want < cur:
                sel = f"ray.io/cluster={CLUSTER},ray.io/node-type=worker"
                pods = live((await self.kube.list(PODS, self.ns, label_selector=sel))["items"])
                named = [p["metadata"]["name"] for p in rng.sample(pods, min(len(pods), cur - want))]
                patch.append(
                    {
                        "op": "add",
                        "path": "/spec/workerGroupSpecs/0/scaleStrategy",
                        "value": {"workersToDelete": named},
                    }
                )
            await self.kube.patch(RAYCLUSTERS, CLUSTER, patch, self.ns, patch_type="json")
            log.done.append(f"scale {CLUSTER}/workers {cur}->{want}")
        except Exception as e:
            log.refused.append(f"scale: {type(e).__name__}: {e}"[:200])
        return log


class RaySegment:
    """The plane, one node agent, one operator, one RayCluster of real Ray (see the module docstring)."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.dir = workdir
        self.seed = seed
        self.net = nodes.node_network("chaos")
        self.plane: ControlPlane | None = None
        self.kube: ApiClient | None = None
        self.agent: Proc | None = None
        self.operators: Operators | None = None
        self.workload: RayWorkload | None = None
        self.checker: Checker | None = None
        self.ns = ""
        self.mode = "single"
        # Pods (uid -> container restart counts) that must survive the current fault as they were.
        self.adopted: dict[str, dict[str, int]] = {}
        self.agent_started = 0.0
        self.canary = False  # the canary job ran on the GCS FT cluster: its record must be kept
        self.worker_restarts: dict[str, int] = {}  # worker uid -> container restarts before a head kill

    async def start(self) -> None:
        plane = ControlPlane(
            PlaneOptions(
                state_dir=self.dir / "plane", extra_ips=[self.net["gateway"]], service_account_admission=True
            )
        )
        await asyncio.to_thread(plane.start)
        self.plane = plane
        rbac.enable(plane)
        self.kube = ApiClient(load_kubeconfig(plane.kubeconfig))
        self.ns = await nodes.new_namespace(self.kube, "chaos-ray")
        rbac.grant_in_namespace(plane, self.ns)
        tls = nodes.kubelet_tls(plane, self.net)
        state = self.dir / "node"
        self.agent = Proc(
            "node-agent",
            [
                sys.executable,
                "-m",
                "rayop.cli.main",
                "node",
                f"--kubeconfig={plane.kubeconfig}",
                f"--name={self.net['name']}",
                f"--state-dir={state}",
                f"--bridge={self.net['bridge']}",
                f"--pod-cidr={self.net['cidr']}",
                f"--python-env={nodes.RAY_ENV}",
                "--cpu=16",
                "--memory=16Gi",
                "--env=RAY_AUTH_MODE=disabled",
                "--backoff=1",
                f"--tls-cert-file={tls['tls_cert_file']}",
                f"--tls-private-key-file={tls['tls_key_file']}",
                f"--client-ca-file={tls['client_ca_file']}",
            ],
            self.dir / "logs",
        )
        self.start_agent()
        await self.wait_node_ready(120)
        spec = OperatorSpec(
            kubeconfig=rbac.operator_kubeconfig(plane),
            namespaces=[self.ns],
            log_dir=self.dir / "logs",
            lease_namespace=self.ns,
        )
        self.operators = Operators(spec, 1)
        self.operators.start()
        self.workload = RayWorkload(self.kube, self.ns)
        await self.workload.setup()
        self.checker = Checker(
            self.kube, [self.ns], self.no_ray, self.no_ray, extra=[self.check_adopted, self.check_ray_nodes]
        )

    async def no_ray(self, ns: str, cluster: str) -> dict[str, str] | None:
        del ns, cluster
        return None  # no RayJob or RayService here: Ray is not asked

    async def wait_node_ready(self, timeout: float) -> None:
        assert self.kube is not None and self.agent is not None
        from rayop.runtime.client import NODES

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.agent.alive():
                raise RuntimeError(f"node agent exited:\n{self.agent.tail()}")
            with contextlib.suppress(Exception):
                node = await self.kube.get_or_none(NODES, self.net["name"])
                conds = ((node or {}).get("status") or {}).get("conditions") or []
                beat = next((c for c in conds if c.get("type") == "Ready"), {})
                if beat.get("status") == "True":
                    return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"node not Ready:\n{self.agent.tail()}")

    async def use_mode(self, mode: str) -> None:
        del mode

    async def ready(self) -> bool:
        """The operator is Ready, and the node agent is alive and working: this incarnation renewed the
        Node's Lease within the last 25 s (it renews every 10 s). Pod statuses alone would not tell: a
        stuck agent leaves the last ones it wrote in place."""
        assert self.operators is not None and self.agent is not None and self.kube is not None
        if not self.agent.alive():
            return False
        lease = await self.kube.get_or_none(LEASES, self.net["name"], "kube-node-lease")
        renewed = parse_timestamp(((lease or {}).get("spec") or {}).get("renewTime")) or 0.0
        if renewed < self.agent_started or time.time() - renewed > 25:
            return False
        return await asyncio.to_thread(self.operators.ready)

    def start_agent(self) -> None:
        assert self.agent is not None
        self.agent_started = time.time() - 1  # the Lease's renewTime has microseconds, the clocks are one
        self.agent.start()

    async def check(self) -> list[Violation]:
        assert self.checker is not None and self.operators is not None and self.agent is not None
        out = [Violation("operator-crash", "operator", e) for e in self.operators.unexpected_exits()]
        code = self.agent.exited()
        if code is not None:
            out.append(Violation("node-agent-crash", "node agent", f"exited {code}:\n{self.agent.tail(15)}"))
            self.start_agent()
        if out:
            self.operators.revive()
        return out + await self.checker.check()

    async def check_adopted(self, s: Snapshot, ns: str) -> list[Violation]:
        """After a node-agent restart: the pods it ran are the same pods, their containers not restarted."""
        del ns
        out = []
        pods = {p["metadata"]["uid"]: p for p in s.pods if alive(p)}
        for uid, counts in self.adopted.items():
            p = pods.get(uid)
            if p is None:
                out.append(Violation("node-adoption", uid, "a pod running before the restart is gone"))
                continue
            now = {
                c["name"]: int(c.get("restartCount") or 0)
                for c in (p.get("status") or {}).get("containerStatuses") or []
            }
            if now != counts:
                out.append(
                    Violation(
                        "node-adoption",
                        p["metadata"]["name"],
                        f"restart counts {now}, before the agent restart {counts}",
                    )
                )
        return out

    async def check_ray_nodes(self, s: Snapshot, ns: str) -> list[Violation]:
        """Per cluster: its Pods Running and Ready, and Ray itself agreeing with them (one ALIVE node per
        Ray Pod); on the GCS FT cluster, the canary job still known once the head is back."""
        assert self.kube is not None
        out: list[Violation] = []
        for cluster in CLUSTERS:
            pods = inv.ray_pods(s.pods, cluster)
            waiting = inv.check_ray_pods_ready(s, cluster)
            if not pods or waiting:
                out += waiting  # no Pods at all: the pod invariants say what is wrong
                continue
            try:
                async with DashboardClient.via_proxy(self.kube, ns, f"{cluster}-head-svc") as ray:
                    alive_nodes = await ray.list_alive_nodes()
                    jobs = await ray.list_jobs() if cluster == FT_CLUSTER and self.canary else []
            except Exception as e:
                out.append(
                    Violation("ray-nodes", cluster, f"the head's dashboard does not answer: {e}"[:300])
                )
                continue
            out += inv.check_ray_nodes(cluster, len(pods), len(alive_nodes))
            if cluster == FT_CLUSTER and self.canary:
                out += inv.check_kept_job(cluster, CANARY, {j.submission_id: j.status for j in jobs})
        return out

    async def after_fault(self) -> str:
        """What a head kill did to its workers, read once the cluster settled again."""
        if not self.worker_restarts:
            return ""
        pods = {p["metadata"]["uid"]: p for p in await self.ray_pods()}
        n = sum(
            restarts(pods.get(uid)) - before for uid, before in self.worker_restarts.items() if uid in pods
        )
        gone = sum(1 for uid in self.worker_restarts if uid not in pods)
        self.worker_restarts = {}
        return f"worker containers restarted since: {n}" + (f", {gone} workers replaced" if gone else "")

    async def submit_canary(self, timeout: float = 300) -> None:
        """Run one short job on the GCS FT cluster and wait until it SUCCEEDED: its record lives in the
        GCS, so in Redis, and must outlive every head restart."""
        assert self.kube is not None
        t0 = time.monotonic()
        submitted = False
        last = ""
        while time.monotonic() - t0 < timeout:
            try:
                async with DashboardClient.via_proxy(self.kube, self.ns, f"{FT_CLUSTER}-head-svc") as ray:
                    if not submitted:
                        with contextlib.suppress(DuplicateSubmission):
                            await ray.submit_job(
                                {"submission_id": CANARY, "entrypoint": "python -c \"print('canary')\""}
                            )
                        submitted = True
                    info = await ray.get_job(CANARY)
                    if info.status == "SUCCEEDED":
                        self.canary = True
                        return
                    if info.terminal:
                        raise RuntimeError(f"the canary job ended {info.status}: {info.message}")
                    last = info.status
            except (TimeoutError, DashboardError, OSError) as e:
                last = f"{type(e).__name__}: {e}"[:300]
            await asyncio.sleep(2)
        raise TimeoutError(f"the canary job did not succeed in {timeout:.0f} s: {last}")

    async def ray_pods(self, cluster: str | None = None) -> list[dict[str, Any]]:
        assert self.kube is not None
        sel = f"ray.io/cluster={cluster}" if cluster else "ray.io/cluster"
        items = (await self.kube.list(PODS, self.ns, label_selector=sel))["items"]
        return [p for p in items if alive(p) and labels(p).get("ray.io/node-type") in ("head", "worker")]

    async def redis_keys(self) -> int:
        """How many keys the Redis pod holds (DBSIZE over its pod IP: the host is on the pods' bridge).
        Only the GCS FT cluster writes there."""
        assert self.kube is not None
        ip = ((await self.kube.get(PODS, REDIS, self.ns)).get("status") or {}).get("podIP")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, 6379), 10)
        try:
            writer.write(b"*1\r\n$6\r\nDBSIZE\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
        if not line.startswith(b":"):
            raise RuntimeError(f"redis answered {line!r} to DBSIZE")
        return int(line[1:])

    async def delete_ft_cluster(self, timeout: float = 180) -> str:
        """GCS FT deletion on real Redis: the operator's cleanup Job must empty the cluster's storage
        namespace in Redis before the finalizer lets the RayCluster go. Returns what happened; raises
        FaultFailed when it did not. (The Job itself may be gone with its owner by the time it is read:
        what Redis holds is the outcome.)"""
        assert self.kube is not None
        from tests.chaos.campaign import FaultFailed

        before = await self.redis_keys()
        if not before:
            raise FaultFailed("Redis holds no keys while the GCS FT cluster runs: is it using Redis?")
        await self.kube.delete(RAYCLUSTERS, FT_CLUSTER, self.ns)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if await self.kube.get_or_none(RAYCLUSTERS, FT_CLUSTER, self.ns) is None:
                took = time.monotonic() - t0
                left = await self.redis_keys()
                if left:
                    raise FaultFailed(
                        f"the GCS FT RayCluster is gone, {left} of its {before} keys are still in Redis"
                    )
                return f"GCS FT RayCluster deleted in {took:.1f} s, its {before} Redis keys cleaned up first"
            await asyncio.sleep(1)
        raise FaultFailed(f"the GCS FT RayCluster still exists {timeout:.0f} s after its deletion")

    async def stop(self) -> None:
        if self.kube is not None:
            with contextlib.suppress(Exception):
                for cluster in CLUSTERS:
                    await self.kube.delete(RAYCLUSTERS, cluster, self.ns, ignore_not_found=True)
                await self.kube.delete(PODS, REDIS, self.ns, ignore_not_found=True)
                for _ in range(60):  # the agent stops what is left when it stops
                    if not await self.ray_pods():
                        break
                    await asyncio.sleep(1)
        if self.operators is not None:
            self.operators.stop()
        if self.agent is not None:
            self.agent.stop(grace=90)
        prefix = "rn" + "".join(ch for ch in self.net["name"].lower() if ch.isalnum())[:10]
        nodes.cleanup_names(prefix, self.net["bridge"])
        if self.kube is not None:
            await self.kube.close()
        if self.plane is not None:
            rbac.collect(self.plane)
            await asyncio.to_thread(self.plane.stop)
        shutil.rmtree(self.dir / "node", ignore_errors=True)


async def node_agent_kill(seg: RaySegment, rng: random.Random) -> str:
    """SIGKILL the agent's own process (its pods' processes keep running), start it again after 0-3 s."""
    assert seg.agent is not None and seg.kube is not None
    from tests.chaos.campaign import FaultFailed, settle

    # The workload step first, so that what runs when the agent dies is what must be kept; pods kept
    # through an earlier restart may since have been scaled away.
    seg.adopted = {}
    took, left = await settle(seg.ready, seg.check, 300)
    if took is None:
        raise FaultFailed("the state before the fault never settled: " + "; ".join(left[:5]))
    seg.adopted = {
        p["metadata"]["uid"]: {
            c["name"]: int(c.get("restartCount") or 0)
            for c in (p.get("status") or {}).get("containerStatuses") or []
        }
        for p in await seg.ray_pods()
    }
    pid = seg.agent.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    assert seg.agent.proc is not None
    await asyncio.to_thread(seg.agent.proc.wait, 30)
    seg.agent.kills += 1
    seg.agent._accounted.add(seg.agent.incarnation)
    down = rng.uniform(0, 3)
    await asyncio.sleep(down)
    seg.start_agent()
    return f"SIGKILL node agent (pid {pid}) running {len(seg.adopted)} Ray pods, restarted after {down:.1f} s"


def restarts(pod: dict[str, Any] | None) -> int:
    return sum(
        int(c.get("restartCount") or 0)
        for c in ((pod or {}).get("status") or {}).get("containerStatuses") or []
    )


async def kill_container(seg: RaySegment, p: dict[str, Any]) -> str:
    """SIGKILL the container process of Ray Pod `p`; return once the agent started it again (or the Pod
    was replaced)."""
    assert seg.kube is not None
    loc = await locate(seg.kube, seg.ns, p["metadata"]["name"], None)
    if not loc.pid:
        return f"{p['metadata']['name']}: container not running"
    before = restarts(p)
    with contextlib.suppress(ProcessLookupError):
        os.kill(loc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        now = await seg.kube.get_or_none(PODS, p["metadata"]["name"], seg.ns)
        if now is None or now["metadata"]["uid"] != p["metadata"]["uid"] or restarts(now) > before:
            break
        await asyncio.sleep(0.5)
    took = time.monotonic() - t0
    what = f"SIGKILL the {labels(p).get('ray.io/node-type')} container of {p['metadata']['name']} (pid {loc.pid})"
    return f"{what}, container restarted {took:.1f} s later"


async def pod_process_kill(seg: RaySegment, rng: random.Random) -> str:
    """SIGKILL the container process of one Ray pod (head or worker, either cluster): the agent restarts
    the container."""
    seg.adopted = {}
    pods = [p for p in await seg.ray_pods() if (p.get("status") or {}).get("phase") == "Running"]
    if not pods:
        return "no running Ray pod to kill"
    return await kill_container(seg, rng.choice(pods))


async def head_kill(seg: RaySegment, cluster: str) -> str:
    """The Ray head killed: SIGKILL its container (GCS, raylet, dashboard all at once). Its workers'
    container restarts since then are counted into the description once the cluster settled again
    (they are expected without GCS fault tolerance, not with it)."""
    seg.adopted = {}
    pods = await seg.ray_pods(cluster)
    heads = [p for p in pods if labels(p).get("ray.io/node-type") == "head"]
    if not heads or (heads[0].get("status") or {}).get("phase") != "Running":
        return f"no running head of {cluster} to kill"
    seg.worker_restarts = {
        p["metadata"]["uid"]: restarts(p) for p in pods if labels(p).get("ray.io/node-type") == "worker"
    }
    return await kill_container(seg, heads[0])


async def head_kill_no_ft(seg: RaySegment, rng: random.Random) -> str:
    del rng
    return await head_kill(seg, CLUSTER)


async def head_kill_gcs_ft(seg: RaySegment, rng: random.Random) -> str:
    del rng
    return await head_kill(seg, FT_CLUSTER)


def faults() -> dict[str, Any]:
    from tests.chaos.campaign import Fault

    return {
        "node-agent-kill": Fault(node_agent_kill, 240, mode="ray"),
        "pod-process-kill": Fault(pod_process_kill, 300, mode="ray"),
        "head-kill": Fault(head_kill_no_ft, 300, mode="ray"),
        "head-kill-gcs-ft": Fault(head_kill_gcs_ft, 300, mode="ray"),
    }
