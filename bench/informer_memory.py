"""Memory of an informer holding 1,100 Ray pods (100 clusters x (1 head + 10 workers)).

Starts a private control plane, creates the pods (shaped like KubeRay's: Ray container with env, probes,
volume mounts, an init container; status Running/Ready with container statuses), then, in a fresh Python
process per variant, lists+watches them with rayop's Informer and reports the resident-set growth.
Variants: managedFields kept (transform=None), stripped (the runtime's default), stripped with strings
interned, and the operator's Pod transform (rayop/controllers/cached_fields.py), with and without interning.

    .venv/bin/python bench/informer_memory.py [--pods 1100]

Writes bench/results/informer.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from rayop.controllers.cached_fields import pod_transform  # noqa: E402
from rayop.runtime.cache import Informer, compact, intern_strings, strip_managed_fields  # noqa: E402
from rayop.runtime.client import NAMESPACES, PODS, ApiClient, load_kubeconfig  # noqa: E402

SELECTOR = "ray.io/node-type in (head,worker,redis-cleanup)"
MODES = {
    "fields": "`cached_fields.pod_transform` (the operator's): only the fields controllers read",
    "fields-intern": "the operator's, then strings interned",
    "compact": "`compact`: managedFields stripped, strings interned",
    "strip": "`strip_managed_fields` (default)",
    "keep": "none (managedFields kept)",
}


PAGE_SIZE = int(os.environ.get("RAYOP_BENCH_PAGE_SIZE", "100"))


def deep_size(root: Any) -> int:
    """Bytes of Python objects reachable from root, each counted once (shared strings too)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        total += sys.getsizeof(x)
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return total


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ray_pod(ns: str, cluster: str, kind: str, i: int) -> dict[str, Any]:
    name = f"{cluster}-{'head' if kind == 'head' else 'small-group-worker'}-{i:05d}"
    env = [{"name": f"RAY_ENV_{k}", "value": f"value-{k}"} for k in range(8)] + [
        {
            "name": "RAY_CLUSTER_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}},
        },
        {"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "RAY_NODE_TYPE_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}},
        },
        {
            "name": "KUBERAY_GEN_RAY_START_CMD",
            "value": "ray start --address=head-svc:6379 --block --num-cpus=1",
        },
        {"name": "RAY_PORT", "value": "6379"},
        {"name": "RAY_ADDRESS", "value": f"{cluster}-head-svc.{ns}.svc.cluster.local:6379"},
        {"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"},
        {"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"},
    ]
    probe = {
        "exec": {
            "command": ["bash", "-c", "wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz"]
        },
        "initialDelaySeconds": 30,
        "timeoutSeconds": 2,
        "periodSeconds": 5,
        "failureThreshold": 10,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "ray.io/cluster": cluster,
                "ray.io/node-type": kind,
                "ray.io/group": "headgroup" if kind == "head" else "small-group",
                "ray.io/identifier": f"{cluster}-{kind}",
                "ray.io/is-ray-node": "yes",
                "app.kubernetes.io/name": "kuberay",
                "app.kubernetes.io/created-by": "kuberay-operator",
            },
            "annotations": {"ray.io/ft-enabled": "false", "ray.io/overwrite-container-cmd": "false"},
            "ownerReferences": [
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayCluster",
                    "name": cluster,
                    "uid": "0b7e6a64-0000-4000-8000-000000000000",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Always",
            "initContainers": [
                {
                    "name": "wait-gcs-ready",
                    "image": "rayproject/ray:2.60.0",
                    "command": ["/bin/bash", "-lc", "--"],
                    "args": ["until ray health-check --address head:6379 > /dev/null 2>&1; do sleep 5; done"],
                    "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}},
                    "env": env[:4],
                }
            ],
            "containers": [
                {
                    "name": "ray-worker" if kind == "worker" else "ray-head",
                    "image": "rayproject/ray:2.60.0",
                    "command": ["/bin/bash", "-lc", "--"],
                    "args": [
                        "ulimit -n 65536; ray start --address=head:6379 --block --num-cpus=1 --memory=2147483648"
                    ],
                    "env": env,
                    "ports": [{"containerPort": 8080, "name": "metrics", "protocol": "TCP"}],
                    "resources": {
                        "limits": {"cpu": "1", "memory": "2Gi"},
                        "requests": {"cpu": "1", "memory": "2Gi"},
                    },
                    "livenessProbe": probe,
                    "readinessProbe": probe,
                    "volumeMounts": [
                        {"mountPath": "/dev/shm", "name": "shared-mem"},
                        {"mountPath": "/tmp/ray", "name": "ray-logs"},
                    ],
                }
            ],
            "volumes": [
                {"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                {"name": "ray-logs", "emptyDir": {}},
            ],
        },
    }


def running_status(pod: dict[str, Any], i: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cname = pod["spec"]["containers"][0]["name"]
    return {
        "phase": "Running",
        "hostIP": "10.1.0.1",
        "podIP": f"10.2.{i // 250}.{i % 250 + 1}",
        "podIPs": [{"ip": f"10.2.{i // 250}.{i % 250 + 1}"}],
        "startTime": now,
        "qosClass": "Guaranteed",
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "containerStatuses": [
            {
                "name": cname,
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": "docker.io/rayproject/ray:2.60.0",
                "imageID": "docker.io/rayproject/ray@sha256:" + "0" * 64,
                "containerID": "containerd://" + f"{i:064d}",
                "state": {"running": {"startedAt": now}},
            }
        ],
    }


async def populate(kubeconfig: str, ns: str, pods: int) -> None:
    cfg = load_kubeconfig(kubeconfig)
    cfg.qps = 0  # setup only: as fast as the API server takes it
    async with ApiClient(cfg) as kube:
        await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        sem = asyncio.Semaphore(32)
        per_cluster = 11
        clusters = max(1, pods // per_cluster)

        async def one(c: int, j: int, n: int) -> None:
            kind = "head" if j == 0 else "worker"
            p = ray_pod(ns, f"raycluster-{c:03d}", kind, j)
            async with sem:
                created = await kube.create(PODS, p)
                created["status"] = running_status(p, n)
                await kube.replace_status(PODS, created)

        await asyncio.gather(
            *(one(c, j, c * per_cluster + j) for c in range(clusters) for j in range(per_cluster))
        )


async def measure(kubeconfig: str, ns: str, mode: str) -> dict[str, Any]:
    async with ApiClient(load_kubeconfig(kubeconfig)) as kube:
        await kube.version()  # session and TLS set up before the baseline
        gc.collect()
        before = rss_kib()
        inf = Informer(
            kube,
            PODS,
            namespace=ns,
            label_selector=SELECTOR,
            transform={
                "strip": strip_managed_fields,
                "compact": compact,
                "keep": None,
                "fields": pod_transform,
                "fields-intern": lambda o: intern_strings(pod_transform(o)),
            }[mode],
            page_size=PAGE_SIZE,
        )
        t0 = time.monotonic()
        await inf.start()
        assert await inf.wait_synced(300)
        synced_s = time.monotonic() - t0
        gc.collect()
        after = rss_kib()
        json_bytes = sum(len(json.dumps(o, separators=(",", ":"))) for o in inf.list())
        objects_bytes = deep_size(inf._store)
        n = len(inf)
        await inf.wait_stopped()
    return {
        "mode": mode,
        "pods": n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "delta_kib": after - before,
        "json_bytes": json_bytes,
        "objects_bytes": objects_bytes,
        "sync_seconds": round(synced_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1100)
    ap.add_argument("--child", nargs=3, metavar=("KUBECONFIG", "NAMESPACE", "MODE"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(*args.child))))
        return

    from rayop.local.plane import ControlPlane, PlaneOptions

    results = []
    with tempfile.TemporaryDirectory(prefix="rayop-bench-informer-") as tmp:
        opts = PlaneOptions(state_dir=Path(tmp), install_crds=False, controller_manager=False)
        with ControlPlane(opts) as plane:
            t0 = time.monotonic()
            asyncio.run(populate(str(plane.kubeconfig), "bench", args.pods))
            print(f"created {args.pods} pods in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            for mode in ("keep", "strip", "compact", "fields", "fields-intern"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(plane.kubeconfig), "bench", mode],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(results[-1], file=sys.stderr)

    lines = [
        "## Informer memory (1,100 Ray pods)",
        "",
        "`bench/informer_memory.py`: one Informer (Pods, KubeRay's label selector) in a fresh Python process "
        "lists and watches 1,100 Ray-shaped pods (100 clusters x 11, status Running/Ready). RSS growth "
        "is measured after `gc.collect()` and includes the list's transient peak (pages of "
        f"{PAGE_SIZE}); Python objects is the deep size of the cache itself; cached JSON is the compact "
        "JSON of the cached objects.",
        "",
        "| transform | pods | RSS before | RSS after | growth | per pod | Python objects | cached JSON | first sync |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {MODES[r['mode']]} | {r['pods']} | "
            f"{r['rss_before_kib'] / 1024:.1f} MiB | {r['rss_after_kib'] / 1024:.1f} MiB | "
            f"{r['delta_kib'] / 1024:.1f} MiB | {r['delta_kib'] / max(1, r['pods']):.1f} KiB | "
            f"{r['objects_bytes'] / 1024 / 1024:.1f} MiB | "
            f"{r['json_bytes'] / 1024 / 1024:.1f} MiB | {r['sync_seconds']} s |"
        )
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "informer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
