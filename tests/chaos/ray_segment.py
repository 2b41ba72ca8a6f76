"""The campaign's real-Ray segment: a RayCluster of real Ray processes run by the node agent (`rayop node`,
its own process), and faults on the node: the agent SIGKILLed and restarted (it must re-adopt the running
pods: same pod uids, no container restarted), and a pod's container process SIGKILLed (the container
restarts and Ray rejoins). Needs root and iproute2, as the e2e tier does.

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
from rayop.ray.dashboard import DashboardClient
from rayop.runtime.client import LEASES, PODS, ApiClient, load_kubeconfig
from tests import nodes, rbac
from tests.chaos.invariants import Checker, Snapshot, Violation, alive, labels, running_ready
from tests.chaos.procs import Operators, OperatorSpec, Proc
from tests.chaos.workload import StepLog, live

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "chaos-ray"


def cluster_manifest(ns: str) -> dict[str, Any]:
    rc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "raycluster.yaml").read_text())
    rc["metadata"] = {"name": CLUSTER, "namespace": ns}
    g = rc["spec"]["workerGroupSpecs"][0]
    g.update(replicas=1, minReplicas=0, maxReplicas=2)
    return rc


class RayWorkload:
    """Autoscaler-style scaling of the one RayCluster's worker group between 0 and 2 workers."""

    def __init__(self, kube: ApiClient, ns: str) -> None:
        self.kube, self.ns = kube, ns

    async def setup(self) -> None:
        await self.kube.create(RAYCLUSTERS, cluster_manifest(self.ns), self.ns)

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
        """Ray itself agrees with the pods: its head reports one ALIVE node per running Ray pod (a killed
        raylet marked dead, its restarted container joined again)."""
        assert self.kube is not None
        pods = [
            p
            for p in s.pods
            if alive(p)
            and labels(p).get("ray.io/cluster") == CLUSTER
            and labels(p).get("ray.io/node-type") in ("head", "worker")
        ]
        if not pods or not all(running_ready(p) for p in pods):
            return []  # the pod invariants say what is wrong
        try:
            async with DashboardClient.via_proxy(self.kube, ns, f"{CLUSTER}-head-svc") as ray:
                nodes = await ray.list_alive_nodes()
        except Exception as e:
            return [Violation("ray-nodes", CLUSTER, f"the head's dashboard does not answer: {e}"[:300])]
        if len(nodes) != len(pods):
            return [
                Violation(
                    "ray-nodes", CLUSTER, f"Ray reports {len(nodes)} alive nodes, {len(pods)} Ray pods run"
                )
            ]
        return []

    async def ray_pods(self) -> list[dict[str, Any]]:
        assert self.kube is not None
        items = (await self.kube.list(PODS, self.ns, label_selector=f"ray.io/cluster={CLUSTER}"))["items"]
        return [p for p in items if alive(p) and labels(p).get("ray.io/node-type") in ("head", "worker")]

    async def stop(self) -> None:
        if self.kube is not None:
            with contextlib.suppress(Exception):
                await self.kube.delete(RAYCLUSTERS, CLUSTER, self.ns, ignore_not_found=True)
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


async def pod_process_kill(seg: RaySegment, rng: random.Random) -> str:
    """SIGKILL the container process of one Ray pod (head or worker): the agent restarts the container."""
    assert seg.kube is not None
    seg.adopted = {}
    pods = [p for p in await seg.ray_pods() if (p.get("status") or {}).get("phase") == "Running"]
    if not pods:
        return "no running Ray pod to kill"
    p = rng.choice(pods)
    loc = await locate(seg.kube, seg.ns, p["metadata"]["name"], None)
    if not loc.pid:
        return f"{p['metadata']['name']}: container not running"

    def restarts(pod: dict[str, Any] | None) -> int:
        return sum(
            int(c.get("restartCount") or 0)
            for c in ((pod or {}).get("status") or {}).get("containerStatuses") or []
        )

    before = restarts(p)
    with contextlib.suppress(ProcessLookupError):
        os.kill(loc.pid, signal.SIGKILL)
    # The fault is over when the agent has started the container again (or the pod was replaced).
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        now = await seg.kube.get_or_none(PODS, p["metadata"]["name"], seg.ns)
        if now is None or now["metadata"]["uid"] != p["metadata"]["uid"] or restarts(now) > before:
            break
        await asyncio.sleep(0.5)
    took = time.monotonic() - t0
    what = f"SIGKILL the {labels(p).get('ray.io/node-type')} container of {p['metadata']['name']} (pid {loc.pid})"
    return f"{what}, container restarted {took:.1f} s later"


def faults() -> dict[str, Any]:
    from tests.chaos.campaign import Fault

    return {
        "node-agent-kill": Fault(node_agent_kill, 240, mode="ray"),
        "pod-process-kill": Fault(pod_process_kill, 300, mode="ray"),
    }
