"""rayop against KubeRay, side by side, on the same kind of plane with the same manifests.

KubeRay's operator is built from its Go module (scripts/build-kuberay.sh, version pinned in versions.env)
and runs with its own CRDs (from the same module); rayop runs with its own. Each operator has a plane of
its own (etcd + kube-apiserver + kube-controller-manager, started the same way, side by side for the whole
bench), so neither inherits the other's leftovers; only one side works at a time. Per run and side:

  create  apply N RayClusters x (1 head + W workers) at once; time until a watch has seen every pod, then
          act as scheduler and kubelet (bind each pod, report it Running/Ready, 32 in flight) and time
          until every RayCluster reports `ready` with all its workers ready;
  scale   (optional) replicas 10 -> 50 on 20 of the clusters: time until the new pods exist and are ready;
  delete  delete every RayCluster: time until the garbage collector has removed every pod (the bench
          confirms each pod's end with a grace period of 0, as a kubelet does).

Writes are attributed by user from the API server's audit log (the operator has a client certificate of
its own; the bench is `rayop-admin`, the controller manager `system:kube-controller-manager`). Operator
CPU and peak RSS (VmHWM) come from /proc. Runs alternate which operator goes first.

    .venv/bin/python bench/kuberay_peer.py [--runs 4] [--big-runs 2] [--quick]

Writes bench/results/kuberay_peer.md (stitched into BENCHMARKS.md by bench/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.scalelib import (  # noqa: E402
    CpuMeter,
    PodCounter,
    create_node,
    drop_namespace,
    load1,
    mark_all_ready,
    proc_stats,
    rss_mib,
    settle,
    wait_all_ready,
    wait_http_ok,
)
from rayop.api import constants as C  # noqa: E402
from rayop.api.kinds import RAYCLUSTERS  # noqa: E402
from rayop.base.pki import key_pem, load_cert, load_key, make_leaf, pem  # noqa: E402
from rayop.local.plane import ControlPlane, PlaneOptions, pick_free_ports  # noqa: E402
from rayop.runtime.client import NAMESPACES, NODES, ApiClient, load_kubeconfig  # noqa: E402
from tests.integration.rayclusters import raycluster  # noqa: E402

RAYOP = str(Path(sys.executable).with_name("rayop"))
RESULT = BENCH / "results" / "kuberay_peer.md"
OPERATOR_USER = "rayop-bench-operator"
KCM_USER = "system:kube-controller-manager"
BENCH_USER = "rayop-admin"
SCALE_CLUSTERS, SCALE_TO = 20, 50

AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: None
  resources: [{group: "coordination.k8s.io", resources: ["leases"]}]
- level: Metadata
"""


def versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def kuberay_dir() -> Path:
    v = versions()["RAYOP_KUBERAY_VERSION"]
    root = Path(os.environ.get("RAYOP_CACHE_DIR") or Path.home() / ".cache" / "rayop")
    return root / "kuberay" / v


# -- planes -----------------------------------------------------------------------------------------


@dataclass
class Side:
    name: str  # "rayop" | "kuberay"
    plane: ControlPlane
    kube: ApiClient
    operator_kubeconfig: Path
    audit_log: Path


def start_side(name: str, crd_dir: Path) -> Side:
    state = Path(tempfile.mkdtemp(prefix=f"rayop-peer-{name}-"))
    state.mkdir(parents=True, exist_ok=True)
    policy = state / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit = state / "audit.log"
    plane = ControlPlane(
        PlaneOptions(
            state_dir=state,
            crd_dir=crd_dir,
            # No rotation: the API server's log library rotates at 100 MB unless told otherwise, and a
            # 10,000-pod run writes more than that, which would cut a phase's writes off at its offset.
            extra_apiserver_args=[
                f"--audit-policy-file={policy}",
                f"--audit-log-path={audit}",
                "--audit-log-maxsize=100000",
            ],
            # The garbage collector deletes the pods of deleted RayClusters; at the controller manager's
            # default client limit (20 QPS) the deletion case would time its token bucket, not the operators.
            # The node lifecycle controller is off: the bench's Node has no kubelet renewing its Lease, so
            # after its grace period the controller would reset a bound pod's Ready to False behind the bench,
            # and that RayCluster would never be ready (seen once in a 10,000-pod run).
            extra_kcm_args=[
                "--kube-api-qps=1000",
                "--kube-api-burst=1000",
                "--controllers=*,-node-lifecycle-controller",
            ],
        )
    )
    plane.start()
    assert plane.pki is not None
    # The operator's own user, so the audit log tells its writes from the bench's.
    ca = load_cert(plane.pki.client_ca.read_bytes())
    ca_key = load_key(plane.pki.client_ca_key.read_bytes())
    cert, key = make_leaf(ca, ca_key, OPERATOR_USER, org="system:masters", client=True)
    crt_path, key_path = plane.pki.client_cert("operator")
    crt_path.write_bytes(pem(cert))
    key_path.write_bytes(key_pem(key))
    key_path.chmod(0o600)
    kc = plane.write_kubeconfig(state / "operator.kubeconfig", user="operator")
    kube = ApiClient(load_kubeconfig(plane.kubeconfig))
    kube.bucket.qps = 0  # the bench's own requests are not rate limited
    return Side(name, plane, kube, kc, audit)


class Audit:
    """Write requests from the API server's audit log, between two offsets, by user and kind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, offset: int) -> dict[str, Counter[str]]:
        if self.offset() < offset:
            raise RuntimeError(f"{self.path} was rotated during a phase: its write counts are lost")
        out: dict[str, Counter[str]] = {}
        with self.path.open("rb") as f:
            f.seek(offset)
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ref = ev.get("objectRef") or {}
                res = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                user = (ev.get("user") or {}).get("username", "?")
                code = (ev.get("responseStatus") or {}).get("code", 0)
                key = f"{ev.get('verb')} {res}" + ("" if code < 400 else f" ({code})")
                out.setdefault(user, Counter())[key] += 1
        return out


# -- operators --------------------------------------------------------------------------------------


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: Any
    metrics_port: int
    probe_port: int


# Extra environment for the rayop operator process (--env), to try settings without editing code.
EXTRA_ENV: dict[str, str] = {}


def start_operator(side: Side, ns: str, tuned: bool) -> Operator:
    metrics, probe, webhook = pick_free_ports(3)
    log_path = Path(tempfile.gettempdir()) / f"rayop-peer-{side.name}-{ns}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    env = dict(os.environ)
    if side.name == "rayop":
        env.update(EXTRA_ENV)
    common_tuned = ["--reconcile-concurrency", "16", "--qps", "-1"] if tuned else []
    if side.name == "rayop":
        cmd = [
            RAYOP,
            "operator",
            "--kubeconfig",
            str(side.operator_kubeconfig),
            "--watch-namespace",
            ns,
            "--enable-leader-election=false",
            "--metrics-addr",
            f"127.0.0.1:{metrics}",
            "--health-probe-bind-address",
            f"127.0.0.1:{probe}",
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(webhook),
            *common_tuned,
        ]
    else:
        env["KUBECONFIG"] = str(side.operator_kubeconfig)
        cmd = [
            str(kuberay_dir() / "kuberay-operator"),
            "--watch-namespace",
            ns,
            "--enable-leader-election=false",
            "--metrics-addr",
            f"127.0.0.1:{metrics}",
            "--health-probe-bind-address",
            f"127.0.0.1:{probe}",
            *common_tuned,
        ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return Operator(proc, log_path, log, metrics, probe)


async def wait_operator_started(side: Side, op: Operator, timeout: float = 120.0) -> None:
    """rayop answers /readyz once its caches synced; KubeRay's /readyz is a plain ping, so wait for
    controller-runtime's "Starting workers" line of the RayCluster controller (logged after its sync)."""
    if side.name == "rayop":
        await wait_http_ok(f"http://127.0.0.1:{op.probe_port}/readyz", timeout)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if op.proc.poll() is not None:
            raise RuntimeError(f"KubeRay exited: {op.log_path.read_text()[-2000:]}")
        for line in op.log_path.read_text(errors="replace").splitlines():
            if "Starting workers" in line and "raycluster" in line.lower():
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"KubeRay not started after {timeout} s (log {op.log_path})")


def stop_operator(op: Operator) -> None:
    op.proc.send_signal(signal.SIGTERM)
    try:
        op.proc.wait(30)
    except subprocess.TimeoutExpired:
        op.proc.kill()
        op.proc.wait()
    op.log.close()


# -- one run ----------------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    title: str
    clusters: int
    workers: int
    tuned: bool
    scale: bool
    runs: int
    timeout: float = 900.0


@dataclass
class Phase:
    seconds: float  # until the last pod exists (create, scale) or is gone (delete)
    ready: float = 0.0  # until every cluster is ready (create, scale)
    marked: float = 0.0  # of which the bench marking pods ready
    operator_cpu: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    writes: dict[str, Counter[str]] = field(default_factory=dict)
    rss_peak: float = 0.0  # VmHWM at the end of the phase


def _cpu_phase(meter: CpuMeter) -> dict[str, float]:
    return meter.used()


async def run_side(side: Side, case: Case, ns: str) -> dict[str, Any]:
    kube = side.kube
    audit = Audit(side.audit_log)
    await kube.create(NAMESPACES, {"metadata": {"name": ns}})
    node = f"node-{ns}"
    await create_node(kube, node)
    op = start_operator(side, ns, case.tuned)
    counter = PodCounter(kube, ns, C.LABEL_CLUSTER)
    out: dict[str, Any] = {"side": side.name, "load_before": load1()}
    try:
        await wait_operator_started(side, op)
        await asyncio.sleep(1.0)  # let start-up settle so the idle figures are idle
        out["rss_idle"] = rss_mib(op.proc.pid)
        await counter.start()
        pid = op.proc.pid
        samples: list[tuple[float, float]] = []

        async def sample_rss() -> None:
            start = time.monotonic()
            while True:
                samples.append((time.monotonic() - start, rss_mib(pid)))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample_rss())
        total = case.clusters * (case.workers + 1)

        # create
        off = audit.offset()
        meter = CpuMeter(side.plane, pid)
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                kube.create(RAYCLUSTERS, raycluster(f"rc-{i:03d}", ns, replicas=case.workers))
                for i in range(case.clusters)
            )
        )
        t_exist = await counter.wait_count(total, case.timeout)
        exist_cpu = meter.used()
        await mark_all_ready(kube, counter.not_ready(), node, 32)
        t_marked = time.monotonic()
        t_ready = await wait_all_ready(kube, ns, case.clusters, case.timeout)
        cpu = meter.used()
        create = Phase(
            seconds=t_exist - t0,
            ready=t_ready - t0,
            marked=t_marked - t_exist,
            operator_cpu=cpu["operator"],
            cpu={**cpu, "operator_until_exist": exist_cpu["operator"]},
            writes=audit.since(off),
            rss_peak=proc_stats(pid)[0],
        )
        out["create"] = create
        out["dups_create"] = counter.created_total - total

        if case.scale:
            await asyncio.sleep(1.0)
            scaled = min(SCALE_CLUSTERS, case.clusters)
            off = audit.offset()
            meter = CpuMeter(side.plane, pid)
            t0 = time.monotonic()
            patch = [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": SCALE_TO}]
            await asyncio.gather(
                *(kube.patch(RAYCLUSTERS, f"rc-{i:03d}", patch, ns, patch_type="json") for i in range(scaled))
            )
            want = total + scaled * (SCALE_TO - case.workers)
            t_exist = await counter.wait_count(want, case.timeout)
            await mark_all_ready(kube, counter.not_ready(), node, 32, first_ip=total)
            t_marked = time.monotonic()
            t_ready = await wait_all_ready(kube, ns, case.clusters, case.timeout)
            cpu = meter.used()
            out["scale"] = Phase(
                seconds=t_exist - t0,
                ready=t_ready - t0,
                marked=t_marked - t_exist,
                operator_cpu=cpu["operator"],
                cpu=cpu,
                writes=audit.since(off),
                rss_peak=proc_stats(pid)[0],
            )
            out["dups_scale"] = counter.created_total - want
            total = want

        await asyncio.sleep(1.0)
        off = audit.offset()
        meter = CpuMeter(side.plane, pid)
        t0 = time.monotonic()
        await kube.delete_collection(RAYCLUSTERS, ns, label_selector="")
        t_gone = await counter.wait_empty(case.timeout)
        cpu = meter.used()
        out["delete"] = Phase(
            seconds=t_gone - t0,
            operator_cpu=cpu["operator"],
            cpu=cpu,
            writes=audit.since(off),
            rss_peak=proc_stats(pid)[0],
        )
        out["dups_total"] = counter.created_total - total
        sampler.cancel()
        out["rss_samples"] = samples[::5]
        out["rss_peak"] = proc_stats(pid)[0]
        out["steal"] = create.cpu.get("steal", 0.0)
        out["load_after"] = load1()
        return out
    finally:
        await counter.stop()
        stop_operator(op)
        await drop_namespace(kube, ns, 600)
        with contextlib.suppress(Exception):
            await kube.delete(NODES, node, ignore_not_found=True)


# -- report -----------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def cell(xs: list[float], unit: str = " s", digits: int = 1) -> str:
    if not xs:
        return "-"
    m = med(xs)
    if len(xs) == 1:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f}{unit} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def writes_per_cluster(phases: list[Phase], user: str, clusters: int) -> dict[str, float]:
    """Median per RayCluster of each write kind by `user` over the runs."""
    kinds: set[str] = set()
    for p in phases:
        kinds |= set(p.writes.get(user, {}))
    return {k: med([p.writes.get(user, Counter())[k] / clusters for p in phases]) for k in sorted(kinds)}


def fmt_writes(w: dict[str, float]) -> str:
    items = [(k, v) for k, v in sorted(w.items(), key=lambda kv: -kv[1]) if v > 0]
    if not items:
        return "none"
    total = sum(v for _, v in items)
    return f"**{total:.2f}**: " + ", ".join(f"{k} {v:.2f}" for k, v in items)


Results = list[tuple[Case, dict[str, list[dict[str, Any]]]]]


def report(cases: Results, meta: dict[str, Any]) -> str:
    v = versions()
    lines = [
        "## rayop and KubeRay side by side (`bench/kuberay_peer.py`)",
        "",
        f"KubeRay {v['RAYOP_KUBERAY_VERSION']} (`ray-operator`, the newest version the Go module proxy serves here, "
        "built from its Go module by `scripts/build-kuberay.sh`, with the CRDs of that module) and rayop (this "
        "tree, its own CRDs). Each operator runs as its own process against a plane of its own (etcd + "
        f"kube-apiserver + kube-controller-manager {v['RAYOP_K8S_VERSION']}, started the same way, only one "
        "side working at a time), watching one fresh namespace, with the same RayCluster manifests applied at "
        "once. No scheduler or kubelet: once all pods exist the bench binds each to a Node and reports it "
        "Running/Ready (32 pods in flight), and confirms the end of deleted pods (grace period 0). The "
        "controller manager's client limit is raised to 1000 QPS so that the garbage collector does not set "
        "the deletion time. Runs alternate which operator goes first. Figures: median (min-max) over the "
        "runs. Times from the first RayCluster create; `ready` means every RayCluster reports `ready` with "
        "all its workers ready. Operator CPU is from the first create until all clusters are ready; peak RSS "
        "is the process's VmHWM at the end of the phase. Writes are the operator's own (by its user in the "
        "API server's audit log), per RayCluster.",
        "",
        f"Machine: {meta['machine']}. Load: 1-min load average {meta['load']}; CPU stolen by the host "
        f"{meta['steal']}. Command: `{meta['command']}`, {meta['wall']} wall, {meta['date']}.",
        "",
    ]
    for case, by_side in cases:
        r, k = by_side["rayop"], by_side["kuberay"]
        total = case.clusters * (case.workers + 1)
        flags = (
            "`--reconcile-concurrency 16 --qps -1` for both"
            if case.tuned
            else "default flags (KubeRay: reconcile concurrency 1, `--qps 100 --burst 200`)"
        )
        lines += [
            f"### {case.title}: {case.clusters} RayClusters x (1 head + {case.workers} workers) = {total:,} pods, {flags}",
            "",
            f"{len(r)} runs per operator.",
            "",
            "| | rayop | KubeRay | KubeRay / rayop |",
            "|---|---|---|---|",
        ]

        def row(
            label: str,
            get: Any,
            unit: str = " s",
            digits: int = 1,
            ratio: bool = True,
            r: list[dict[str, Any]] = r,
            k: list[dict[str, Any]] = k,
            lines: list[str] = lines,
        ) -> None:
            rv = [float(get(x)) for x in r]
            kv = [float(get(x)) for x in k]
            q = f"{med(kv) / med(rv):.2f}x" if ratio and med(rv) > 0 else ""
            lines.append(f"| {label} | {cell(rv, unit, digits)} | {cell(kv, unit, digits)} | {q} |")

        row("all pods exist", lambda x: x["create"].seconds)
        row("all RayClusters ready", lambda x: x["create"].ready)
        row("of which the bench marking pods ready", lambda x: x["create"].marked, ratio=False)
        row("operator CPU until all pods exist", lambda x: x["create"].cpu["operator_until_exist"], digits=2)
        row("operator CPU until all ready", lambda x: x["create"].operator_cpu, digits=2)
        row("API server CPU until all ready", lambda x: x["create"].cpu.get("kube-apiserver", 0), digits=2)
        row("operator RSS idle (after start-up)", lambda x: x["rss_idle"], " MiB", 0)
        row("operator peak RSS, all clusters ready", lambda x: x["create"].rss_peak, " MiB", 0)
        if case.scale:
            row(
                f"scale-up {SCALE_CLUSTERS} clusters {case.workers} -> {SCALE_TO}: new pods exist",
                lambda x: x["scale"].seconds,
            )
            row("scale-up: all ready", lambda x: x["scale"].ready)
            row("scale-up: operator CPU", lambda x: x["scale"].operator_cpu, digits=2)
        row("delete all RayClusters: all pods gone", lambda x: x["delete"].seconds)
        row("delete: operator CPU", lambda x: x["delete"].operator_cpu, digits=2)
        row("operator peak RSS, whole run", lambda x: x["rss_peak"], " MiB", 0)
        dups_r = sum(x["dups_total"] + x["dups_create"] + x.get("dups_scale", 0) for x in r)
        dups_k = sum(x["dups_total"] + x["dups_create"] + x.get("dups_scale", 0) for x in k)
        lines.append(f"| duplicate pods (all runs) | {dups_r} | {dups_k} | |")
        lines += [
            "",
            "Operator writes per RayCluster, create until ready (median over runs):",
            "",
            f"- rayop: {fmt_writes(writes_per_cluster([x['create'] for x in r], OPERATOR_USER, case.clusters))}",
            f"- KubeRay: {fmt_writes(writes_per_cluster([x['create'] for x in k], OPERATOR_USER, case.clusters))}",
        ]
        if case.scale:
            lines += [
                f"- scale-up, per scaled RayCluster: rayop "
                f"{fmt_writes(writes_per_cluster([x['scale'] for x in r], OPERATOR_USER, min(SCALE_CLUSTERS, case.clusters)))}; "
                f"KubeRay {fmt_writes(writes_per_cluster([x['scale'] for x in k], OPERATOR_USER, min(SCALE_CLUSTERS, case.clusters)))}",
            ]
        lines += [
            f"- deletion, per RayCluster: rayop "
            f"{fmt_writes(writes_per_cluster([x['delete'] for x in r], OPERATOR_USER, case.clusters))}; "
            f"KubeRay {fmt_writes(writes_per_cluster([x['delete'] for x in k], OPERATOR_USER, case.clusters))}",
            "",
        ]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------


async def main_async(
    args: argparse.Namespace,
    write_partial: Callable[[Results, list[float], list[float]], None] | None = None,
) -> tuple[list[tuple[Case, dict[str, list[dict[str, Any]]]]], dict[str, Any]]:
    gc.disable()  # this process holds thousands of pods; see bench/raycluster_scale.py
    kr = kuberay_dir()
    if not (kr / "kuberay-operator").exists():
        raise SystemExit(f"KubeRay is not built: run `bash scripts/build-kuberay.sh` ({kr})")
    if args.quick:
        cases = [Case("quick", "Quick check", 10, 10, tuned=False, scale=True, runs=1, timeout=300)]
    elif args.clusters:
        cases = [
            Case("custom", "Custom", args.clusters, args.workers, args.tuned, not args.no_scale, args.runs)
        ]
    else:
        cases = [
            Case("defaults", "Both at their defaults", 100, 10, tuned=False, scale=True, runs=args.runs),
            Case("tuned", "Both tuned", 100, 10, tuned=True, scale=False, runs=args.runs),
            Case("big", "10,000 pods, both at their defaults", 100, 100, False, False, args.big_runs, 1800),
        ]
        if args.only:
            cases = [c for c in cases if c.key in args.only]
    crds = {"rayop": REPO / "config" / "crd", "kuberay": kr / "crd"}
    sides = {name: start_side(name, crds[name]) for name in args.sides}
    loads: list[float] = []
    steals: list[float] = []
    results: list[tuple[Case, dict[str, list[dict[str, Any]]]]] = []
    try:
        for case in cases:
            by_side: dict[str, list[dict[str, Any]]] = {"rayop": [], "kuberay": []}
            for i in range(case.runs):
                order = ["rayop", "kuberay"] if i % 2 == 0 else ["kuberay", "rayop"]
                for name in order:
                    if name not in args.sides:
                        continue
                    side = sides[name]
                    await settle(side.kube)
                    ns = f"peer-{case.key}-{i}"
                    res = await run_side(side, case, ns)
                    by_side[name].append(res)
                    loads += [res["load_before"], res["load_after"]]
                    steals.append(res["steal"])
                    c = res["create"]
                    print(
                        f"{case.key} run {i} {name}: exist {c.seconds:.1f} s, ready {c.ready:.1f} s, "
                        f"cpu {c.operator_cpu:.2f} s, rss idle {res['rss_idle']:.0f} peak {res['rss_peak']:.0f} MiB, "
                        f"delete {res['delete'].seconds:.1f} s, dups {res['dups_total']}, "
                        f"load {res['load_before']:.1f}/{res['load_after']:.1f}, "
                        f"writes {dict(c.writes.get(OPERATOR_USER, {}))}",
                        flush=True,
                    )
                    if args.verbose:
                        print("rss", " ".join(f"{t:.1f}:{m:.0f}" for t, m in res["rss_samples"]))
                        for ph in ("scale", "delete"):
                            if ph in res:
                                print(ph, dict(res[ph].writes.get(OPERATOR_USER, {})))
            results.append((case, by_side))
            # Write what is measured so far: a bench cut short by its wall budget still leaves figures.
            if write_partial is not None:
                write_partial(results, loads, steals)
    finally:
        for side in sides.values():
            await side.kube.close()
            side.plane.stop()
    return results, load_meta(loads, steals)


def load_meta(loads: list[float], steals: list[float]) -> dict[str, Any]:
    return {
        "load": f"{min(loads):.1f}-{max(loads):.1f} (median {med(loads):.1f}) on 2 cores" if loads else "-",
        "steal": f"{max(steals):.2f} s at most per create phase" if steals else "-",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4, help="runs per operator of the 1,100-pod cases")
    ap.add_argument("--big-runs", type=int, default=2, help="runs per operator of the 10,000-pod case")
    ap.add_argument("--only", nargs="*", help="cases to run, in this order: defaults, tuned, big")
    ap.add_argument("--quick", action="store_true", help="one small run per operator, to check the setup")
    ap.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    ap.add_argument("--sides", nargs="+", default=["rayop", "kuberay"], help="operators to run")
    ap.add_argument("--clusters", type=int, default=0, help="one custom case of this many clusters")
    ap.add_argument("--workers", type=int, default=10, help="workers per cluster of the custom case")
    ap.add_argument("--tuned", action="store_true", help="custom case: concurrency 16, no client limit")
    ap.add_argument("--no-scale", action="store_true", help="custom case: no scale-up phase")
    ap.add_argument("--verbose", action="store_true", help="print RSS samples and every phase's writes")
    ap.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for the rayop operator process")
    args = ap.parse_args()
    EXTRA_ENV.update(kv.split("=", 1) for kv in args.env)
    started = time.monotonic()
    from bench.run import machine

    write = not args.no_write and not args.quick and not args.clusters and len(args.sides) == 2

    def render(results: Results, meta: dict[str, Any]) -> str:
        meta.update(
            machine=machine(),
            command="make bench-peer"
            if not sys.argv[1:]
            else "bench/kuberay_peer.py " + " ".join(sys.argv[1:]),
            wall=f"{(time.monotonic() - started) / 60:.0f} min",
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        )
        return report(results, meta)

    def partial(results: Results, loads: list[float], steals: list[float]) -> None:
        if write:
            RESULT.parent.mkdir(parents=True, exist_ok=True)
            RESULT.write_text(render(results, load_meta(loads, steals)))

    results, meta = asyncio.run(main_async(args, partial))
    text = render(results, meta)
    print(text)
    if write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
