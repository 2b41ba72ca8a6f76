"""`rayop demo` (what `make demo` runs): rayop working end to end on one machine.

Starts the local plane, the operator and a node agent; applies the example RayCluster and waits until
it is ready; runs Ray tasks through the head and shows they ran on the workers; runs the example RayJob
to SUCCEEDED and prints its logs; applies the example RayService, sends it requests through its serve
Service and upgrades its cluster while a counter shows requests sent and failed; then tears everything
down (unless --keep).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import typer

from rayop.cli import local
from rayop.local.plane import REPO_ROOT, default_bin_dir, running_plane, stop_recorded
from rayop.runtime.client import ApiClient, load_kubeconfig

TASK_SCRIPT = textwrap.dedent(
    """
    import socket, ray
    ray.init()
    head = socket.gethostname()

    @ray.remote(num_cpus=1)
    def where(i):
        import socket, time
        time.sleep(0.5)
        return socket.gethostname()

    hosts = ray.get([where.remote(i) for i in range(6)])
    print("tasks ran on:", sorted(set(hosts)))
    print("on a worker:", any(h != head for h in hosts))
    print("cluster resources:", {k: v for k, v in sorted(ray.cluster_resources().items()) if "node:" not in k})
    """
)


UPGRADED_SERVE_CONFIG = """\
applications:
  - name: hello
    route_prefix: /
    import_path: hello:build
    args:
      greeting: hello from the upgraded cluster
"""


def _step(title: str) -> None:
    typer.secho(f"\n==> {title}", fg=typer.colors.CYAN, bold=True)


class Traffic:
    """Requests to a Service's `serve` port through the API server's service proxy, at a steady rate, in a
    thread of its own; a request fails on a non-2xx answer, a connection error or no answer in 10 s."""

    def __init__(self, kubeconfig: Path, namespace: str, service: str, rate: float = 20.0) -> None:
        self.kubeconfig = kubeconfig
        self.path = f"/api/v1/namespaces/{namespace}/services/{service}:serve/proxy/?name=demo"
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self.answers: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def line(self) -> str:
        answers = ", ".join(f"{n} x {a!r}" for a, n in sorted(self.answers.items()))
        return f"sent {self.sent}, failed {self.failed}" + (f" ({answers})" if answers else "")

    async def _run(self) -> None:
        import aiohttp

        api = ApiClient(load_kubeconfig(self.kubeconfig))
        url = api.config.server + self.path
        bearer = api.config.bearer()
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                async with api.session.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as r:
                    body = (await r.text()).strip()
                    if 200 <= r.status < 300:
                        self.answers[body] = self.answers.get(body, 0) + 1
                    else:
                        self.failed += 1
            except (TimeoutError, aiohttp.ClientError):
                self.failed += 1

        t0 = time.monotonic()
        try:
            while not self._stop.is_set():
                self.sent += 1
                t = asyncio.create_task(one())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, t0 + self.sent / self.rate - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=15)
        finally:
            await api.close()


class Demo:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.kubeconfig = state / "kubeconfig"
        self.kubectl_bin = str(default_bin_dir() / "kubectl")

    def kubectl(self, *args: str, check: bool = True, show: bool = False) -> str:
        proc = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args], capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        if show:
            typer.echo(f"$ kubectl {' '.join(args)}")
            typer.echo(proc.stdout.rstrip())
        return proc.stdout

    def get(self, *args: str) -> dict[str, Any]:
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(out) if out.strip() else {}

    def wait(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            v = check()
            if v:
                typer.echo(f"   {what}: after {time.monotonic() - t0:.1f} s")
                return v
            time.sleep(1)
        raise RuntimeError(f"{what}: not reached within {timeout:.0f} s")

    def rayop(self, *args: str) -> str:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        proc = subprocess.run(
            [sys.executable, "-m", "rayop.cli.main", *args], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            raise RuntimeError(f"rayop {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def raycluster(self) -> None:
        _step("Apply examples/raycluster.yaml (1 head + 2 workers)")
        self.kubectl(
            "apply", "--server-side", "-f", str(REPO_ROOT / "examples" / "raycluster.yaml"), show=True
        )
        self.wait(
            "RayCluster raycluster-mini is ready",
            lambda: self.get("raycluster", "raycluster-mini").get("status", {}).get("state") == "ready",
            300,
        )
        self.kubectl("get", "rayclusters", "-o", "wide", show=True)
        self.kubectl("get", "pods,services", "-l", "ray.io/cluster=raycluster-mini", "-o", "wide", show=True)
        _step("The RayCluster's status, as the operator wrote it")
        status = self.get("raycluster", "raycluster-mini").get("status", {})
        typer.echo(json.dumps(status, indent=2))
        head = self.kubectl(
            "get",
            "pods",
            "-l",
            "ray.io/cluster=raycluster-mini,ray.io/node-type=head",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ).strip()
        _step(f"`ray status` inside the head pod ({head})")
        typer.echo(self.rayop("exec", head, "--", "ray", "status").rstrip())
        _step("Ray tasks submitted through the head run on the workers")
        typer.echo(self.rayop("exec", head, "--", "python", "-c", TASK_SCRIPT).rstrip())

    def rayjob(self) -> None:
        _step("Apply examples/rayjob.yaml (a job on its own new cluster)")
        self.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "examples" / "rayjob.yaml"), show=True)
        seen: list[str] = []

        def done() -> bool:
            st = self.get("rayjob", "rayjob-sample").get("status", {})
            cur = f"{st.get('jobDeploymentStatus', '')}/{st.get('jobStatus', '')}"
            if not seen or seen[-1] != cur:
                seen.append(cur)
                typer.echo(f"   deployment/job status: {cur}")
            if st.get("jobDeploymentStatus") == "Failed":
                raise RuntimeError(f"RayJob failed: {st.get('reason')}: {st.get('message')}")
            return bool(st.get("jobStatus") == "SUCCEEDED" and st.get("jobDeploymentStatus") == "Complete")

        self.wait("RayJob rayjob-sample SUCCEEDED", done, 420)
        self.kubectl("get", "rayjobs", show=True)
        _step("The job's logs (from the submitter pod)")
        pod = self.kubectl(
            "get",
            "pods",
            "-l",
            "job-name=rayjob-sample",
            "-o",
            "jsonpath={.items[0].metadata.name}",
            check=False,
        ).strip()
        if pod:
            typer.echo(self.rayop("logs", pod).rstrip()[-3000:])

    def rayservice(self) -> None:
        name = "rayservice-hello"
        # Two Ray clusters run side by side during the upgrade: free the cores the earlier examples hold.
        self.kubectl(
            "delete", "raycluster", "raycluster-mini", "--ignore-not-found", "--wait=false", check=False
        )
        self.kubectl("delete", "rayjob", "rayjob-sample", "--ignore-not-found", "--wait=false", check=False)
        _step("Apply examples/rayservice.yaml (a Ray Serve application; its code comes from a ConfigMap)")
        self.kubectl(
            "apply", "--server-side", "-f", str(REPO_ROOT / "examples" / "rayservice.yaml"), show=True
        )

        def ready() -> bool:
            rs = self.get("rayservice", name)
            conds = {c.get("type"): c.get("status") for c in rs.get("status", {}).get("conditions") or []}
            return conds.get("Ready") == "True" and not rs["status"].get("pendingServiceStatus", {}).get(
                "rayClusterName"
            )

        self.wait(f"RayService {name} is Ready", ready, 420)
        self.kubectl("get", "rayservices", show=True)
        self.kubectl("get", "services", "-l", f"ray.io/originated-from-cr-name={name}", show=True)
        _step("A request through the serve Service (via the API server's service proxy)")
        path = f"/api/v1/namespaces/default/services/{name}-serve-svc:serve/proxy/?name=demo"
        typer.echo(f"$ kubectl get --raw '{path}'")
        typer.echo(self.kubectl("get", "--raw", path).rstrip())

        _step("Upgrade the cluster (new env var) and the greeting, while 20 requests/s keep coming")
        before = self.get("rayservice", name)["status"]["activeServiceStatus"]["rayClusterName"]
        patch = [
            {"op": "add", "path": "/spec/rayClusterDeletionDelaySeconds", "value": 10},
            {"op": "replace", "path": "/spec/serveConfigV2", "value": UPGRADED_SERVE_CONFIG},
        ]
        for where in ("headGroupSpec", "workerGroupSpecs/0"):
            patch.append(
                {
                    "op": "add",
                    "path": f"/spec/rayClusterConfig/{where}/template/spec/containers/0/env/-",
                    "value": {"name": "DEMO_REVISION", "value": "2"},
                }
            )
        traffic = Traffic(self.kubeconfig, "default", f"{name}-serve-svc").start()
        try:
            time.sleep(3)
            t0 = time.monotonic()
            self.kubectl("patch", "rayservice", name, "--type", "json", "-p", json.dumps(patch), show=True)
            last = ""
            deadline = t0 + 420
            while time.monotonic() < deadline:
                rs = self.get("rayservice", name)
                st = rs.get("status", {})
                active = st.get("activeServiceStatus", {}).get("rayClusterName", "")
                pending = st.get("pendingServiceStatus", {}).get("rayClusterName", "")
                clusters = self.kubectl(
                    "get",
                    "rayclusters",
                    "-l",
                    f"ray.io/originated-from-cr-name={name}",
                    "-o",
                    "name",
                    check=False,
                ).split()
                line = f"active {active or '-'}, pending {pending or '-'}, clusters {len(clusters)}"
                if line != last:
                    typer.echo(f"   {time.monotonic() - t0:5.1f} s  {line}  | {traffic.line()}")
                    last = line
                if active != before and not pending and len(clusters) == 1:
                    break
                time.sleep(1)
            else:
                raise RuntimeError("the upgrade did not finish within 420 s")
            time.sleep(2)
        finally:
            traffic.stop()
        typer.echo(f"   upgrade done in {time.monotonic() - t0:.1f} s; requests {traffic.line()}")
        if traffic.failed:
            raise RuntimeError(f"{traffic.failed} requests failed during the upgrade")


def run_demo(
    dir: Path = typer.Option(
        Path.home() / ".rayop" / "demo", "--dir", help="State folder for the demo plane."
    ),
    keep: bool = typer.Option(False, help="Leave the plane, operator and node agent running afterwards."),
    rayjob: bool = typer.Option(True, help="Also run the example RayJob."),
    rayservice: bool = typer.Option(
        True, help="Also run the example RayService and upgrade it under traffic."
    ),
) -> None:
    """Show rayop working: a real Ray cluster and a Ray job from YAML, on this machine."""
    state = dir.expanduser().resolve()
    if os.geteuid() != 0:
        typer.echo("the demo runs pods in network namespaces and needs root", err=True)
        raise typer.Exit(1)
    _step(
        "Start the local plane (etcd, kube-apiserver, kube-controller-manager), the operator, a node agent, "
        "metrics-server"
    )
    if running_plane(state):
        stop_recorded(state)
    t0 = time.monotonic()
    local.up(dir=state, controller_manager=True, operator=True, node=True)
    typer.echo(f"   up in {time.monotonic() - t0:.1f} s")
    demo = Demo(state)
    ok = False
    try:
        demo.raycluster()
        if rayjob:
            demo.rayjob()
        if rayservice:
            demo.rayservice()
        ok = True
    except RuntimeError as e:
        typer.secho(f"demo failed: {e}", fg=typer.colors.RED, err=True)
        typer.echo(f"logs are in {state / 'logs'}", err=True)
    finally:
        if keep:
            typer.echo(
                f"\nstill running; export KUBECONFIG={demo.kubeconfig}; stop with: rayop local down --dir {state}"
            )
        else:
            _step("Tear down")
            stopped = stop_recorded(state)
            typer.echo(f"   stopped: {', '.join(stopped)}")
    if not ok:
        raise typer.Exit(1)
    typer.secho(
        "\ndemo finished: rayop ran a real Ray cluster, job and service from YAML", fg=typer.colors.GREEN
    )
