"""A RayService cluster upgrade under steady traffic, as a timeline, with the requests it failed.

Starts a private control plane, the local node agent (real Ray 2.60 pods as processes) and `rayop operator`
as its own process (`--use-kubernetes-proxy`, default settings). Applies `examples/rayservice.yaml` (one head,
one worker, a Serve application from a ConfigMap) and waits until it is Ready. Then, per run, a client sends
25 requests/s to the RayService's serve Service through the API server's service proxy (a request fails on a
non-2xx answer, a connection error or no answer in 10 s) while the RayService's cluster spec is changed (an
env var in every Ray container, so new Pods are needed). The RayService and its RayClusters are polled every
0.25 s to note, from the change:

- pending cluster up: the new RayCluster `ready` (its Pods Running and Ready);
- switch: the Services point at the new cluster (`activeServiceStatus` changed: its Serve applications RUNNING
  and a Serve proxy answering);
- old deleted: the old RayCluster gone (`rayClusterDeletionDelaySeconds` 10 s, then drained of in-flight
  requests, read from Ray's `ray_serve_num_ongoing_http_requests`).

    .venv/bin/python bench/rayservice_upgrade.py [--runs 3]

Needs root and iproute2 (the node agent). Writes bench/results/rayservice.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.scalelib import load1  # noqa: E402
from rayop.api.kinds import RAYCLUSTERS, RAYSERVICES  # noqa: E402
from rayop.local.plane import ControlPlane, PlaneOptions  # noqa: E402
from rayop.runtime.client import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS, ApiClient, load_kubeconfig  # noqa: E402
from tests.e2e import test_node_agent as na  # noqa: E402
from tests.e2e.serve_load import OperatorProcess, steady_load  # noqa: E402
from tests.helpers import eventually  # noqa: E402
from tests.integration.rayservices import clusters_of, condition, names  # noqa: E402

NAME = "rayservice-hello"
RATE = 25.0
DELAY = 10
PHASES = ("pending cluster up", "switch", "old deleted")


def revision(manifest: dict[str, Any], value: str) -> dict[str, Any]:
    cfg = copy.deepcopy(manifest["spec"]["rayClusterConfig"])
    for g in (cfg["headGroupSpec"], *cfg["workerGroupSpecs"]):
        c = g["template"]["spec"]["containers"][0]
        c["env"] = [
            *[e for e in c.get("env") or [] if e["name"] != "BENCH_REVISION"],
            {"name": "BENCH_REVISION", "value": value},
        ]
    return cfg


async def one_upgrade(kube: ApiClient, ns: str, manifest: dict[str, Any], run: int) -> dict[str, Any]:
    rs = await kube.get(RAYSERVICES, NAME, ns)
    old = names(rs)[0]
    seen: dict[str, float] = {}
    async with steady_load(kube, ns, f"{NAME}-serve-svc", rate=RATE) as load:
        await eventually(lambda: load.ok >= 25, 60, 0.2, what="traffic flowing")
        t0 = time.monotonic()
        await kube.patch(
            RAYSERVICES,
            NAME,
            {"spec": {"rayClusterConfig": revision(manifest, str(run))}},
            ns,
            patch_type="merge",
        )

        async def done() -> bool:
            cur = await kube.get(RAYSERVICES, NAME, ns)
            now = time.monotonic() - t0
            active, pending = names(cur)
            # Read the pending RayCluster itself: the RayService's copy of its status is written only when
            # the RayService's own status changes, so it can lag the cluster's `ready` until the switch.
            if pending and "pending cluster up" not in seen:
                rc = await kube.get_or_none(RAYCLUSTERS, pending, ns)
                if rc is not None and (rc.get("status") or {}).get("state") == "ready":
                    seen["pending cluster up"] = now
            if active and active != old:
                seen.setdefault("pending cluster up", now)
                seen.setdefault("switch", now)
                if old not in await clusters_of(kube, ns, NAME):
                    seen.setdefault("old deleted", now)
                    return True
            return False

        await eventually(done, 600, 0.25, what=f"upgrade {run}")
        await asyncio.sleep(2)
    return {
        **seen,
        "sent": load.sent,
        "failed": load.failed,
        "rate": load.achieved_rate(),
        "load": f"{load1():.1f}",
    }


async def bench(runs: int) -> list[dict[str, Any]]:
    x, tag = na._free_subnet(), f"{os.getpid() % 100000}"
    net = {
        "cidr": f"10.213.{x}.0/24",
        "gateway": f"10.213.{x}.1",
        "bridge": f"rs{tag}",
        "name": f"bench-{tag}",
    }
    state = Path(tempfile.mkdtemp(prefix="rayop-bench-rs-"))
    plane = ControlPlane(
        PlaneOptions(state_dir=state / "plane", extra_ips=[net["gateway"]], service_account_admission=True)
    )
    plane.start()
    results: list[dict[str, Any]] = []
    try:
        agent_state = Path(tempfile.mkdtemp(prefix="rayop-node-", dir="/var/tmp"))
        env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        agent, task = await na.start_agent(plane, net, agent_state, cpu="16", memory="32Gi", default_env=env)
        kube = ApiClient(load_kubeconfig(plane.kubeconfig))
        op: OperatorProcess | None = None
        try:
            ns = f"bench-{uuid.uuid4().hex[:6]}"
            await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            await eventually(lambda: kube.get(SERVICEACCOUNTS, "default", ns), 30, what="default SA")
            await eventually(lambda: kube.get(CONFIGMAPS, "kube-root-ca.crt", ns), 30, what="root CA")
            docs = list(yaml.safe_load_all((REPO / "examples" / "rayservice.yaml").read_text()))
            manifest = next(d for d in docs if d["kind"] == "RayService")
            manifest["spec"]["rayClusterDeletionDelaySeconds"] = DELAY
            op = OperatorProcess(plane.kubeconfig, ns, state / "operator.log")
            op.start()
            t0 = time.monotonic()
            for d in docs:
                d["metadata"]["namespace"] = ns
                await kube.create(CONFIGMAPS if d["kind"] == "ConfigMap" else RAYSERVICES, d, ns)

            async def ready() -> bool:
                rs = await kube.get(RAYSERVICES, NAME, ns)
                return condition(rs, "Ready").get("status") == "True" and not names(rs)[1]

            await eventually(ready, 600, 0.25, what="the example Ready")
            print(f"example Ready after {time.monotonic() - t0:.1f}s", flush=True)
            for i in range(runs):
                r = await one_upgrade(kube, ns, manifest, i + 1)
                results.append(r)
                print({k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
        finally:
            if op is not None:
                op.stop()
            await kube.close()
            await na.stop_agent(agent, task)
            shutil.rmtree(agent_state, ignore_errors=True)
    finally:
        plane.stop()
        shutil.rmtree(state, ignore_errors=True)
    return results


def write(results: list[dict[str, Any]], runs: int) -> None:
    from bench.run import machine

    lines = [
        "## RayService: cluster upgrade under traffic (`bench/rayservice_upgrade.py`)",
        "",
        f"`examples/rayservice.yaml` (one head, one worker, real Ray 2.60 Serve) on the local node agent, "
        f"`rayop operator` as its own process. A client sends {RATE:.0f} requests/s through the serve Service "
        "(API server service proxy; failed = non-2xx, connection error or no answer in 10 s) while the cluster "
        f"spec changes. Seconds from the change; `rayClusterDeletionDelaySeconds` {DELAY}.",
        "",
        "| run | " + " | ".join(PHASES) + " | requests sent | failed | 1-min load after |",
        "|---|" + "---|" * (len(PHASES) + 3),
    ]
    for i, r in enumerate(results, 1):
        cells = [f"{r[p]:.1f}" if p in r else "-" for p in PHASES]
        lines.append(
            f"| {i} | "
            + " | ".join(cells)
            + f" | {r['sent']} ({r['rate']:.1f}/s) | **{r['failed']}** | {r['load']} |"
        )
    if results:
        med = [f"{statistics.median(r[p] for r in results if p in r):.1f}" for p in PHASES]
        lines.append(
            "| median | " + " | ".join(med) + f" | {sum(r['sent'] for r in results)} | "
            f"**{sum(r['failed'] for r in results)}** | |"
        )
    lines += [
        "",
        "Where the time goes: pending cluster up is Ray starting a head and a worker on a busy 2-core machine "
        "(the physical floor of any upgrade that needs new Pods) and Serve deploying the application: a "
        "serving worker's readiness probe includes its Serve proxy's `/-/healthz`, so the pending cluster is "
        "`ready` only once Serve answers on it. The switch (applications RUNNING and a Ready Pod's Serve proxy "
        "answering) then lands within the same 0.25 s poll. Old deleted adds "
        f"the {DELAY} s deletion delay and the drain (Ray exports the proxies' ongoing-requests gauge every few "
        "seconds). KubeRay switches on the applications' status alone and deletes at the delay without a drain "
        "(its own zero-downtime test asserts 0 failures under Locust); there is no KubeRay to run on this "
        "machine, so no side-by-side figure.",
        "",
        f"Machine: {machine()}; 2 cores shared with the plane, the node agent and Ray (two Ray clusters "
        "during an upgrade). "
        f"Command: `.venv/bin/python bench/rayservice_upgrade.py --runs {runs}` (under `flock`, no other "
        f"benchmark running), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "rayservice.md").write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("needs root and iproute2 (node agent)", file=sys.stderr)
        return 1
    results = asyncio.run(bench(args.runs))
    write(results, args.runs)
    print((BENCH / "results" / "rayservice.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
