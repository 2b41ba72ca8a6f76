"""Apply → SUCCEEDED of a trivial RayJob on a new 1-head cluster, split into phases.

Starts a private control plane (with kube-controller-manager: the submitter is a batch Job), the local node
agent (real Ray pods as processes in network namespaces) and the RayCluster + RayJob controllers in this
process with their default settings (RayJob status polling every 3 s, as KubeRay). The dashboard is
reached through the API server's service proxy. Each run applies a RayJob and polls it every 0.1 s to note
when each phase was first visible in its status:

- cluster start: apply → `status.dashboardURL` set (RayCluster ready: head pod Running and Ready);
- submission: → `jobStatus` RUNNING (submitter pod start + `ray job submit` in K8sJobMode, one POST in
  HTTPMode, plus the driver's start);
- run: → `jobStatus` SUCCEEDED;
- finish: → `jobDeploymentStatus` Complete (K8sJobMode also waits for the submitter to exit).

    .venv/bin/python bench/rayjob_latency.py [--runs 3]

Needs root and iproute2 (the node agent). Writes bench/results/rayjob.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from rayop.controllers import rayjob_machine as M  # noqa: E402
from rayop.local.plane import ControlPlane, PlaneOptions  # noqa: E402
from rayop.ray.dashboard import DashboardClient  # noqa: E402
from rayop.runtime.client import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS, ApiClient, load_kubeconfig  # noqa: E402
from tests.e2e import test_node_agent as na  # noqa: E402
from tests.helpers import eventually  # noqa: E402
from tests.integration.rayjobs import RAYJOBS, get_rj, operator, rayjob, status_of  # noqa: E402

ENTRYPOINT = "python -c 'print(42)'"
PHASES = ("cluster start", "submission", "run", "finish")


async def one_run(kube: ApiClient, ns: str, name: str, mode: str) -> dict[str, float]:
    t0 = time.time()
    await kube.create(RAYJOBS, rayjob(name, ns, entrypoint=ENTRYPOINT, submissionMode=mode))
    seen: dict[str, float] = {}

    async def done() -> bool:
        st = status_of(await get_rj(kube, ns, name))
        now = time.time()
        if st.get("dashboardURL"):
            seen.setdefault("ready", now)
        if st.get("jobDeploymentStatus") in ("Complete", "Failed"):
            if st.get("jobDeploymentStatus") != "Complete":
                raise RuntimeError(f"{name} failed: {st}")
            seen.setdefault("complete", now)
            return True
        return False

    await eventually(done, 300, interval=0.1, what=f"{name} complete")
    st = status_of(await get_rj(kube, ns, name))
    # Ray's own millisecond timestamps (same clock): submitted at start_time, driver done at end_time.
    dash = DashboardClient.via_proxy(kube, ns, f"{st['rayClusterName']}-head-svc")
    try:
        info = await dash.get_job(st["jobId"])
    finally:
        await dash.close()
    start, end = info.start_time / 1000, info.end_time / 1000
    return {
        "cluster start": seen["ready"] - t0,
        "submission": start - seen["ready"],
        "run": end - start,
        "finish": seen["complete"] - end,
        "total": seen["complete"] - t0,
    }


async def bench(runs: int) -> dict[str, list[dict[str, float]]]:
    x, tag = na._free_subnet(), f"{os.getpid() % 100000}"
    net = {
        "cidr": f"10.213.{x}.0/24",
        "gateway": f"10.213.{x}.1",
        "bridge": f"rb{tag}",
        "name": f"bench-{tag}",
    }
    state = Path(tempfile.mkdtemp(prefix="rayop-bench-rj-"))
    plane = ControlPlane(
        PlaneOptions(state_dir=state / "plane", extra_ips=[net["gateway"]], service_account_admission=True)
    )
    plane.start()
    results: dict[str, list[dict[str, float]]] = {"K8sJobMode": [], "HTTPMode": []}
    try:
        agent_state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
        env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        agent, task = await na.start_agent(plane, net, agent_state, cpu="16", memory="16Gi", default_env=env)
        kube = ApiClient(load_kubeconfig(plane.kubeconfig))
        try:
            ns = f"bench-{uuid.uuid4().hex[:6]}"
            await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            await eventually(lambda: kube.get(SERVICEACCOUNTS, "default", ns), 30, what="default SA")
            await eventually(lambda: kube.get(CONFIGMAPS, "kube-root-ca.crt", ns), 30, what="root CA")
            async with operator(kube, ns, use_proxy=True, config=M.RayJobConfig()):
                for i in range(runs):
                    for mode in results:
                        name = f"b{i}-{mode[:4].lower()}"
                        r = await one_run(kube, ns, name, mode)
                        results[mode].append(r)
                        print(mode, {k: round(v, 2) for k, v in r.items()}, flush=True)
                        await kube.delete(RAYJOBS, name, ns)
        finally:
            await kube.close()
            await na.stop_agent(agent, task)
            shutil.rmtree(agent_state, ignore_errors=True)
    finally:
        plane.stop()
        shutil.rmtree(state, ignore_errors=True)
    return results


def write(results: dict[str, list[dict[str, float]]], runs: int) -> None:
    lines = [
        "## RayJob: apply → SUCCEEDED (`bench/rayjob_latency.py`)",
        "",
        f"A trivial entrypoint (`{ENTRYPOINT}`) on a new RayCluster with one head and no workers, on the local "
        "node agent (real Ray 2.60 pods as processes), operator in process with default settings (status poll "
        f"every 3 s, dashboard through the API server proxy). Median of {runs} runs per mode, seconds.",
        "",
        "| mode | " + " | ".join(PHASES) + " | total |",
        "|---|" + "---|" * (len(PHASES) + 1),
    ]
    for mode, rs in results.items():
        cells = [f"{statistics.median(r[p] for r in rs):.1f}" for p in (*PHASES, "total")]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Phases: cluster start = apply → `status.dashboardURL` seen (RayCluster ready, head pod Running and "
        "Ready); submission = → Ray's `start_time` of the job (K8sJobMode: submitter pod start, GCS wait, "
        "`ray job status`, `ray job submit`; HTTPMode: the next reconcile's POST); run = Ray's `start_time` → "
        "`end_time` (driver process start and exit); finish = → `jobDeploymentStatus` Complete seen (the "
        "3 s status poll; K8sJobMode also waits for the submitter's `ray job logs --follow` and the Job "
        "controller). Status observed by polling the API every 0.1 s.",
        "",
        f"Command: `.venv/bin/python bench/rayjob_latency.py --runs {runs}`",
        "",
    ]
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "rayjob.md").write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("needs root and iproute2 (node agent)", file=sys.stderr)
        return 1
    results = asyncio.run(bench(args.runs))
    write(results, args.runs)
    print((BENCH / "results" / "rayjob.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
