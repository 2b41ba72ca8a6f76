"""Admission latency the rayop webhook adds on the local plane.

Starts a private control plane (etcd + kube-apiserver, CRDs installed) and `rayop webhook` as a separate
process (so client and webhook do not share an event loop), then times sequential creates of valid
RayClusters and RayServices through the REST client in pairs: one in a namespace the webhook is registered
for (failurePolicy Fail, URL clientConfig on 127.0.0.1), one in a namespace it is not. The difference of the two distributions
is what the webhook adds: TLS round trip from the API server, AdmissionReview encode/decode and
validation. The pure decision time (rayop.webhook.review on the same objects, in process) is reported too.

    .venv/bin/python bench/webhook_latency.py [--creates 400]

Writes bench/results/webhook.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from rayop.local.plane import ControlPlane, PlaneOptions, pick_free_ports  # noqa: E402
from rayop.runtime.client import (  # noqa: E402
    NAMESPACES,
    VALIDATING_WEBHOOKS,
    ApiClient,
    ApiError,
    Resource,
    load_kubeconfig,
)
from rayop.webhook.admission import review  # noqa: E402
from tests.unit.validation_cases import build  # noqa: E402

RESOURCES = {
    "RayCluster": Resource("ray.io", "v1", "rayclusters", kind="RayCluster"),
    "RayService": Resource("ray.io", "v1", "rayservices", kind="RayService"),
}
CONFIG_NAME = "rayop-validating-webhook"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


async def create_once(client: ApiClient, ns: str, kind: str) -> float:
    obj = build(kind, {"metadata.name": f"b-{uuid.uuid4().hex[:12]}"})
    t0 = time.perf_counter()
    await client.create(RESOURCES[kind], obj, ns)
    return time.perf_counter() - t0


async def wait_enforced(client: ApiClient, ns: str) -> None:
    bad = build("RayCluster", {"metadata.name": "probe", "spec.workerGroupSpecs[0].minReplicas": 9})
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            await client.request("POST", RESOURCES["RayCluster"].path(ns), body=bad, params={"dryRun": "All"})
        except ApiError as e:
            if "maxReplicas" in e.message:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the webhook is not enforced")


async def apiserver_webhook_histogram(client: ApiClient) -> dict[str, float]:
    """Cumulative bucket counts of the API server's own webhook call timer (includes TLS and transport)."""
    text = await client.request("GET", "/metrics")
    buckets: dict[str, float] = {}
    for line in str(text).splitlines():
        if (
            line.startswith("apiserver_admission_webhook_admission_duration_seconds_bucket")
            and 'type="validating"' in line
        ):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def decision_times(n: int = 2000) -> dict[str, tuple[float, float]]:
    out = {}
    for kind in ("RayCluster", "RayService"):
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "operation": "CREATE",
                "kind": {"group": "ray.io", "version": "v1", "kind": kind},
                "object": build(kind, {}),
            },
        }
        raw = json.dumps(body).encode()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            json.dumps(review(kind, json.loads(raw)))
            ts.append(time.perf_counter() - t0)
        out[kind] = (pct(ts, 50), pct(ts, 99))
    return out


async def run(creates: int) -> str:
    state = Path(tempfile.mkdtemp(prefix="rayop-bench-webhook-"))
    plane = ControlPlane(PlaneOptions(state_dir=state, controller_manager=False))
    plane.start()
    proc: asyncio.subprocess.Process | None = None
    client = ApiClient(load_kubeconfig(plane.kubeconfig))
    try:
        on_ns, off_ns = "bench-webhook", "bench-plain"
        for ns, labels in ((on_ns, {"rayop.bench/webhook": "on"}), (off_ns, {})):
            await client.create(
                NAMESPACES,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
            )
        (port,) = pick_free_ports(1)
        proc = await asyncio.create_subprocess_exec(
            str(REPO / ".venv" / "bin" / "rayop"),
            "webhook",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--kubeconfig",
            str(plane.kubeconfig),
            "--register",
            "--config-name",
            CONFIG_NAME,
            "--log-level",
            "warning",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        # Scope the registration to one namespace, so each pair of creates (one per namespace, issued back
        # to back) sees the same machine load: the only difference between the pair is the webhook.
        end = time.monotonic() + 30
        while True:
            cfg = await client.get_or_none(VALIDATING_WEBHOOKS, CONFIG_NAME)
            if cfg is not None or time.monotonic() > end:
                break
            await asyncio.sleep(0.1)
        assert cfg is not None, "rayop webhook did not register"
        for h in cfg["webhooks"]:
            h["namespaceSelector"] = {"matchLabels": {"rayop.bench/webhook": "on"}}
        await client.replace(VALIDATING_WEBHOOKS, cfg)
        await wait_enforced(client, on_ns)
        for kind in RESOURCES:  # warm up connections and caches
            for _ in range(20):
                await create_once(client, on_ns, kind)
                await create_once(client, off_ns, kind)
        before = await apiserver_webhook_histogram(client)
        samples: dict[tuple[str, bool], list[float]] = {}
        for i in range(creates):
            for kind in RESOURCES:
                order = (True, False) if i % 2 == 0 else (False, True)
                for on in order:
                    samples.setdefault((kind, on), []).append(
                        await create_once(client, on_ns if on else off_ns, kind)
                    )
        after = await apiserver_webhook_histogram(client)
        dec = decision_times()
    finally:
        await client.close()
        if proc is not None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
        plane.stop()
    rows = []
    for kind in RESOURCES:
        off, on = samples[(kind, False)], samples[(kind, True)]
        rows.append(
            f"| {kind} | {len(off)} / {len(on)} | {ms(pct(off, 50))} | {ms(pct(on, 50))} | "
            f"**{ms(pct(on, 50) - pct(off, 50))}** | {ms(pct(off, 99))} | {ms(pct(on, 99))} | "
            f"**{ms(pct(on, 99) - pct(off, 99))}** | {ms(statistics.mean(on) - statistics.mean(off))} | "
            f"{ms(dec[kind][0])} / {ms(dec[kind][1])} |"
        )
    calls = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    hist = []
    for le in ("0.005", "0.025", "0.1"):
        if calls and le in after:
            share = (after[le] - before.get(le, 0.0)) / calls
            hist.append(f"{share:.1%} within {float(le) * 1000:.0f} ms")
    cmdline = f"`.venv/bin/python bench/webhook_latency.py --creates {creates}`"
    return "\n".join(
        [
            "## Admission webhook latency",
            "",
            f"{cmdline}: a private plane (etcd + kube-apiserver, no controller manager) and `rayop webhook` in its "
            "own process on 127.0.0.1 (URL clientConfig, TLS with a generated CA, failurePolicy Fail), registered "
            "for one namespace only. Each iteration creates one valid object in the webhook's namespace and one in "
            "a plain namespace, back to back (alternating order), through rayop's REST client, so both series see "
            'the same load; latencies in milliseconds, "added" is with minus without at the same percentile. '
            "The last column is the webhook's own decision time (JSON decode, validation, warnings, JSON encode), "
            "measured in process, p50 / p99.",
            "",
            "| kind | creates (off / on) | p50 off | p50 on | p50 added | p99 off | p99 on | p99 added | mean added | decision p50 / p99 |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"The API server's own timer for the webhook call (`apiserver_admission_webhook_admission_duration_seconds`, "
            f"TLS and transport included) over the {calls:.0f} measured calls: {', '.join(hist) or 'not available'}.",
            "",
            f"Target: under 20 ms added at p99. 1-minute load average at the end of the run: {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores (the machine is shared, so tails include other work).",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=400, help="creates per kind and namespace")
    args = ap.parse_args()
    section = asyncio.run(run(args.creates))
    out = BENCH / "results" / "webhook.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(section)
    print(section)


if __name__ == "__main__":
    main()
