"""Node agent figures: pod start latency, memory per Ray head/worker pod, apply -> ready for 1 head + 2 workers.

Starts its own control plane and an in-process node agent (needs root), runs plain pods and then the example
RayCluster's head and worker pods as rayop's builders make them, and writes bench/results/node.md.

    .venv/bin/python bench/node_agent.py [--pods 5] [--ray-runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rayop.builders.options import BuildOptions  # noqa: E402
from rayop.builders.pod import build_head_pod, build_worker_pod  # noqa: E402
from rayop.builders.service import build_head_service  # noqa: E402
from rayop.local.plane import ControlPlane, PlaneOptions  # noqa: E402
from rayop.node import containers  # noqa: E402
from rayop.node.agent import NodeAgent, NodeConfig, default_python_env  # noqa: E402
from rayop.node.locate import locate  # noqa: E402
from rayop.runtime.client import NAMESPACES, PODS, SERVICEACCOUNTS, SERVICES, ApiClient, load_kubeconfig  # noqa: E402

Obj = dict[str, Any]
RESULT = REPO / "bench" / "results" / "node.md"


def free_subnet() -> int:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    for x in range(60, 120):
        if f"10.213.{x}." not in routes:
            return x
    raise RuntimeError("no free 10.213.x.0/24")


def ready(p: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (p.get("status") or {}).get("conditions") or []
    )


async def poll(pred: Any, timeout: float, interval: float = 0.05) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await pred():
            return time.monotonic()
        await asyncio.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout}s")


def pss_rss(pids: list[int]) -> tuple[int, int]:
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return pss, rss


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


async def plain_pods(kube: ApiClient, agent: NodeAgent, ns: str, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"running": [], "ready": [], "deleted": [], "pss": [], "procs": []}
    for i in range(n):
        name = f"p{i}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
            },
        }
        t0 = time.monotonic()
        await kube.create(PODS, pod, ns)

        async def running(name: str = name) -> bool:
            p = await kube.get(PODS, name, ns)
            return (p.get("status") or {}).get("phase") == "Running"

        async def is_ready(name: str = name) -> bool:
            return ready(await kube.get(PODS, name, ns))

        out["running"].append(await poll(running, 60) - t0)
        out["ready"].append(await poll(is_ready, 60) - t0)
        p = await kube.get(PODS, name, ns)
        uid = p["metadata"]["uid"]
        w = agent.workers[uid]
        pids = [*agent.pod_processes(uid), w.state.sandbox_pid]
        out["pss"].append(pss_rss(pids)[0])
        out["procs"].append(len(pids))
        t1 = time.monotonic()
        await kube.delete(PODS, name, ns)

        async def gone(name: str = name) -> bool:
            return await kube.get_or_none(PODS, name, ns) is None

        out["deleted"].append(await poll(gone, 60) - t1)
    return out


def ray_objects(ns: str) -> tuple[Obj, Obj, list[Obj]]:
    cluster = yaml.safe_load((REPO / "examples" / "raycluster.yaml").read_text())
    cluster["metadata"].update(namespace=ns, uid=str(uuid.uuid4()))
    opts = BuildOptions()

    def strip(o: Obj) -> Obj:
        o["metadata"].pop("ownerReferences", None)
        return o

    group = cluster["spec"]["workerGroupSpecs"][0]
    return (
        strip(build_head_service(cluster, opts)),
        strip(build_head_pod(cluster, opts)),
        [strip(build_worker_pod(cluster, group, opts, replica_index=i)) for i in range(2)],
    )


async def namespace(kube: ApiClient, ns: str) -> None:
    await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    async def sa() -> bool:
        return await kube.get_or_none(SERVICEACCOUNTS, "default", ns) is not None

    await poll(sa, 60, 0.2)


async def ray_cluster(kube: ApiClient, agent: NodeAgent, ns: str, settle: float) -> dict[str, Any]:
    await namespace(kube, ns)
    svc, head, workers = ray_objects(ns)
    t0 = time.monotonic()
    await kube.create(SERVICES, svc, ns)
    names = [(await kube.create(PODS, p, ns))["metadata"]["name"] for p in (head, *workers)]
    ready_at: dict[str, float] = {}

    async def all_ready() -> bool:
        for n in names:
            if n not in ready_at and ready(await kube.get(PODS, n, ns)):
                ready_at[n] = time.monotonic() - t0
        return len(ready_at) == len(names)

    await poll(all_ready, 600, 0.25)
    loc = await locate(kube, ns, names[0], "ray-head")
    status = ""
    code = -1
    for _ in range(30):
        code, out = await containers.exec_in(loc.pid, loc.spec_path, ["ray", "status"], 60)
        status = out.decode(errors="replace")
        if code == 0 and " 2 workers" in status:
            break
        await asyncio.sleep(1)
    three = time.monotonic() - t0
    await asyncio.sleep(settle)
    mem: dict[str, tuple[int, int, int, int]] = {}
    for n in names:
        uid = (await kube.get(PODS, n, ns))["metadata"]["uid"]
        pids = agent.pod_processes(uid)
        pss, rss = pss_rss(pids)
        mem[n] = (pss, rss, len(pids), agent.pod_memory(uid))
    t1 = time.monotonic()
    for n in names:
        await kube.delete(PODS, n, ns)

    async def gone() -> bool:
        return all([await kube.get_or_none(PODS, n, ns) is None for n in names])

    await poll(gone, 120, 0.25)
    return {
        "head_ready": ready_at[names[0]],
        "workers_ready": [ready_at[n] for n in names[1:]],
        "all_ready": max(ready_at.values()),
        "status_3_nodes": three,
        "status_ok": code == 0 and " 2 workers" in status,
        "mem": {"head": mem[names[0]], "workers": [mem[n] for n in names[1:]]},
        "delete": time.monotonic() - t1,
    }


SCALE_DRIVER = """
import socket, time, ray
ray.init()
@ray.remote(num_cpus=1)
def work():
    time.sleep(2)
    return socket.gethostname()
t = time.time()
refs = [work.remote() for _ in range(2)]
while len([n for n in ray.nodes() if n["Alive"]]) < 2:
    time.sleep(0.1)
print("REGISTERED", time.time() - t)
ray.get(refs)
print("DONE", time.time() - t)
"""


async def autoscaler(kube: ApiClient, ns: str, version: str) -> dict[str, float]:
    """Demand from a driver in the head -> first new worker registered in Ray (examples/raycluster-autoscaler)."""
    from tests.integration.rayjobs import RAYCLUSTERS, operator

    await namespace(kube, ns)
    rc = yaml.safe_load((REPO / "examples" / "raycluster-autoscaler.yaml").read_text())
    rc["spec"]["autoscalerOptions"]["version"] = version
    name = rc["metadata"]["name"]
    async with operator(kube, ns):
        t0 = time.monotonic()
        await kube.create(RAYCLUSTERS, rc, ns)

        async def state_ready() -> bool:
            return ((await kube.get(RAYCLUSTERS, name, ns)).get("status") or {}).get("state") == "ready"

        ready_at = await poll(state_ready, 300, 0.25) - t0
        heads = await kube.list(PODS, ns, label_selector=f"ray.io/cluster={name},ray.io/node-type=head")
        loc = await locate(kube, ns, heads["items"][0]["metadata"]["name"], "ray-head")
        code, out = await containers.exec_in(loc.pid, loc.spec_path, ["python", "-c", SCALE_DRIVER], 400)
        text = out.decode(errors="replace")
        if code != 0:
            raise RuntimeError(text)
        registered = float(text.split("REGISTERED", 1)[1].split()[0])
        done = float(text.split("DONE", 1)[1].split()[0])
        await kube.delete(RAYCLUSTERS, name, ns)

        async def gone() -> bool:
            return not (await kube.list(PODS, ns, label_selector=f"ray.io/cluster={name}"))["items"]

        await poll(gone, 180, 0.5)
    return {"ready": ready_at, "registered": registered, "done": done}


async def main(args: argparse.Namespace) -> str:
    x = free_subnet()
    gw = f"10.213.{x}.1"
    plane_dir = Path(tempfile.mkdtemp(prefix="rayop-bench-plane-"))
    state = Path(tempfile.mkdtemp(prefix="rayop-bench-node-", dir="/var/tmp"))
    cp = ControlPlane(PlaneOptions(state_dir=plane_dir, extra_ips=[gw], service_account_admission=True))
    cp.start()
    kube = ApiClient(load_kubeconfig(cp.kubeconfig))
    cfg = NodeConfig(
        name="bench-node",
        state_dir=state,
        bridge=f"rb{os.getpid() % 100000}",
        pod_cidr=f"10.213.{x}.0/24",
        cpu="16",
        memory="16Gi",
        python_env=default_python_env(),
    )
    agent = NodeAgent(cfg, client=ApiClient(load_kubeconfig(cp.kubeconfig)))
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 60)
        await namespace(kube, "bench")
        plain = await plain_pods(kube, agent, "bench", args.pods)
        runs = [await ray_cluster(kube, agent, f"bench-ray-{i}", args.settle) for i in range(args.ray_runs)]
        scale = {v: await autoscaler(kube, f"bench-as-{v}", v) for v in args.autoscaler}
        load = os.getloadavg()
    finally:
        agent.stop()
        await asyncio.wait_for(task, 180)
        await kube.close()
        cp.stop()
        shutil.rmtree(plane_dir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    return report(args, plain, runs, scale, load)


def report(
    args: argparse.Namespace,
    plain: dict[str, list[float]],
    runs: list[dict[str, Any]],
    scale: dict[str, dict[str, float]],
    load: Any,
) -> str:
    med = statistics.median
    lines = [
        "## Node agent (pods as processes)",
        "",
        "`bench/node_agent.py`: its own control plane and an in-process `rayop node` agent. Plain pods run "
        "`sleep 600` one after another; then the example RayCluster (1 head, 2 workers, `examples/raycluster.yaml`) "
        "is built by rayop's builders and its Service and three Pods are applied at once. Times are from the "
        "create call to the state seen by polling the API server (50 ms for plain pods, 250 ms for Ray). "
        "Memory is summed over every process in the pod's PID namespaces (container inits included, the "
        "sandbox holder too for plain pods): PSS counts shared pages once across pods, cgroup is the "
        "container memory cgroups' usage (RSS + page cache + tmpfs).",
        "",
        f"Command: `.venv/bin/python bench/node_agent.py --pods {args.pods} --ray-runs {args.ray_runs} "
        f"--settle {args.settle} --autoscaler {' '.join(args.autoscaler)}`. Load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(the machine is shared; figures under load are slower than on an idle box).",
        "",
        f"| plain pod (n={args.pods}) | median | min | max |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("running", "create → phase Running"),
        ("ready", "create → Ready"),
        ("deleted", "delete → object gone"),
    ):
        v = plain[key]
        lines.append(f"| {label} | {med(v):.2f} s | {min(v):.2f} s | {max(v):.2f} s |")
    lines.append(f"| memory of an idle pod (sleep + init + sandbox), PSS | {mib(med(plain['pss']))} | | |")
    lines += [
        "",
        "| Ray, 1 head + 2 workers | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |",
        "|---|" + "---|" * len(runs),
        "| apply → head Ready | " + " | ".join(f"{r['head_ready']:.1f} s" for r in runs) + " |",
        "| apply → both workers Ready | "
        + " | ".join(f"{max(r['workers_ready']):.1f} s" for r in runs)
        + " |",
        "| apply → all 3 Ready | " + " | ".join(f"{r['all_ready']:.1f} s" for r in runs) + " |",
        "| apply → `ray status` in the head lists 3 nodes | "
        + " | ".join(f"{r['status_3_nodes']:.1f} s" + ("" if r["status_ok"] else " (not seen)") for r in runs)
        + " |",
        "| delete 3 pods → all gone | " + " | ".join(f"{r['delete']:.1f} s" for r in runs) + " |",
    ]
    lines += [
        "",
        f"| memory after {args.settle:.0f} s idle | processes | PSS | RSS | cgroup |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs):
        pss, rss, n, cg = r["mem"]["head"]
        lines.append(f"| head (run {i + 1}) | {n} | {mib(pss)} | {mib(rss)} | {mib(cg)} |")
        for j, (pss, rss, n, cg) in enumerate(r["mem"]["workers"]):
            lines.append(f"| worker {j + 1} (run {i + 1}) | {n} | {mib(pss)} | {mib(rss)} | {mib(cg)} |")
    if scale:
        lines += [
            "",
            "Ray's autoscaler (`examples/raycluster-autoscaler.yaml`: head with 0 CPUs, workers 0..3; rayop's "
            "operator in the bench process): a driver run in the head asks for 2 tasks of 1 CPU.",
            "",
            "| autoscaler | apply → RayCluster ready | demand → first new worker registered in Ray | "
            "demand → both 2 s tasks done |",
            "|---|---|---|---|",
        ]
        for version, res in scale.items():
            lines.append(
                f"| {version} | {res['ready']:.1f} s | {res['registered']:.1f} s | {res['done']:.1f} s |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=5)
    ap.add_argument("--ray-runs", type=int, default=1)
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--autoscaler", nargs="*", default=["v2", "v1"], help="autoscaler versions to time")
    a = ap.parse_args()

    def interrupt(*_: object) -> None:
        # asyncio.run cancels the main task on KeyboardInterrupt, so the plane and the pods get stopped.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    text = asyncio.run(main(a))
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(text)
    print(text)
