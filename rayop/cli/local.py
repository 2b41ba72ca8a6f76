"""`rayop local up|status|down`: the embedded control plane for users, in the background."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import typer

from rayop.local.plane import (
    ControlPlane,
    PlaneError,
    PlaneOptions,
    default_bin_dir,
    pick_free_ports,
    running_plane,
    start_daemon,
    stop_recorded,
)

app = typer.Typer(no_args_is_help=True)

DEFAULT_DIR = Path(os.environ.get("RAYOP_LOCAL_DIR", str(Path.home() / ".rayop" / "local")))
# The node agent's pod network; the bridge takes the first address, which pods use to reach the
# API server (so it must be in the API server's certificate).
POD_CIDR = os.environ.get("RAYOP_LOCAL_POD_CIDR", "10.213.0.0/24")
NODE_NAME = "rayop-node"


def _gateway(cidr: str) -> str:
    import ipaddress

    return str(next(ipaddress.ip_network(cidr).hosts()))


def _wait(check: object, timeout: float, what: str, log: Path) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else "(no log)"
    raise PlaneError(f"{what} not ready after {timeout:.0f} s; last lines of {log}:\n{tail}")


def _start_operator(state: Path, kubeconfig: Path) -> str:
    metrics, health, webhook = pick_free_ports(3)
    proc = start_daemon(
        state,
        "operator",
        [
            sys.executable,
            "-m",
            "rayop.cli.main",
            "operator",
            f"--kubeconfig={kubeconfig}",
            f"--metrics-addr=127.0.0.1:{metrics}",
            f"--health-probe-bind-address=127.0.0.1:{health}",
            "--leader-election-namespace=default",
            "--log-stdout-encoder=console",
            # The host has no cluster DNS: reach Ray dashboards through the API server's service proxy.
            "--use-kubernetes-proxy=true",
            # The local plane enforces rayop's admission rules like a real cluster would.
            "--enable-webhook=true",
            "--webhook-host=127.0.0.1",
            f"--webhook-port={webhook}",
            f"--webhook-url=https://127.0.0.1:{webhook}",
        ],
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise PlaneError(
                f"operator exited with code {proc.returncode}; see {state / 'logs' / 'operator.log'}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    _wait(ready, 60, "operator", state / "logs" / "operator.log")
    return f"operator (metrics 127.0.0.1:{metrics}, health 127.0.0.1:{health}, webhook 127.0.0.1:{webhook})"


def _start_node(state: Path, kubeconfig: Path) -> str:
    ray_env = os.environ.get("RAYOP_RAY_ENV")
    args = [
        sys.executable,
        "-m",
        "rayop.cli.main",
        "node",
        f"--kubeconfig={kubeconfig}",
        f"--name={NODE_NAME}",
        f"--state-dir={state / 'node'}",
        f"--pod-cidr={POD_CIDR}",
        # Pods are processes sharing the machine's cores; advertise more CPU than there are cores so
        # a small Ray cluster (1 CPU per pod in the examples) fits on a 2-core laptop.
        f"--cpu={os.environ.get('RAYOP_LOCAL_NODE_CPU', '16')}",
        # The chart's operator image (`rayop:<version>`) runs with the environment running this command,
        # which has rayop: `rayop local up --no-operator` then `helm install rayop charts/rayop` works.
        f"--image-env=rayop={sys.prefix}",
    ]
    if ray_env:
        args.append(f"--python-env={ray_env}")
    proc = start_daemon(state, "node-agent", args)
    kubectl = str(default_bin_dir() / "kubectl")

    def ready() -> bool:
        if proc.poll() is not None:
            raise PlaneError(
                f"node agent exited with code {proc.returncode}; see {state / 'logs' / 'node-agent.log'}"
            )
        out = subprocess.run(
            [
                kubectl,
                f"--kubeconfig={kubeconfig}",
                "get",
                "node",
                NODE_NAME,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            ],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() == "True"

    _wait(ready, 90, "node agent", state / "logs" / "node-agent.log")
    return f"node agent {NODE_NAME} (pods on {POD_CIDR})"


def _dir(d: Path | None) -> Path:
    return (d or DEFAULT_DIR).expanduser().resolve()


@app.command()
def up(
    dir: Path | None = typer.Option(None, "--dir", help="State folder (default ~/.rayop/local)."),
    controller_manager: bool = typer.Option(True, help="Also run kube-controller-manager (GC, Jobs)."),
    operator: bool = typer.Option(True, help="Also run the rayop operator."),
    node: bool = typer.Option(True, help="Also run a node agent that runs Pods as processes (needs root)."),
) -> None:
    """Start the local plane (and the operator and a node agent) in the background."""
    state = _dir(dir)
    existing = running_plane(state)
    if existing:
        typer.echo(f"a local plane is already running in {state} ({existing.server})")
        typer.echo(f"export KUBECONFIG={existing.kubeconfig}")
        return
    # A previous plane that died leaves a stale record; clear it so `down` does not chase old PIDs.
    stop_recorded(state)
    if node and os.geteuid() != 0:
        typer.echo("note: not root, so no node agent (pods will stay Pending)", err=True)
        node = False
    plane = ControlPlane(
        PlaneOptions(
            state_dir=state,
            controller_manager=controller_manager or node,
            # Pods started by the node agent reach the API server through the bridge gateway and
            # authenticate with their service-account token, as in a real cluster.
            extra_ips=[_gateway(POD_CIDR)] if node else [],
            service_account_admission=node,
        )
    )
    try:
        plane.start()
        parts = [f"plane {plane.server} (Kubernetes {plane.version})"]
        if operator:
            parts.append(_start_operator(state, plane.kubeconfig))
        if node:
            parts.append(_start_node(state, plane.kubeconfig))
    except (PlaneError, KeyboardInterrupt) as e:
        stop_recorded(state)
        plane.stop()
        typer.echo(
            f"error: {e}" if isinstance(e, PlaneError) else "interrupted; stopped what had started", err=True
        )
        raise typer.Exit(1) from e
    typer.echo("local up: " + "; ".join(parts) + f"; state in {state}")
    typer.echo(f"export KUBECONFIG={plane.kubeconfig}")


@app.command()
def status(dir: Path | None = typer.Option(None, "--dir")) -> None:
    """Say whether the local plane runs, and where."""
    state = _dir(dir)
    st = running_plane(state)
    if not st:
        typer.echo(f"no local plane running in {state}")
        raise typer.Exit(1)
    typer.echo(f"running: {st.server} (Kubernetes {st.version})")
    for name, pid in st.pids.items():
        typer.echo(f"  {name:<26} pid {pid}")
    typer.echo(f"export KUBECONFIG={st.kubeconfig}")


@app.command()
def down(dir: Path | None = typer.Option(None, "--dir")) -> None:
    """Stop everything `rayop local up` started, by PID."""
    state = _dir(dir)
    stopped = stop_recorded(state)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running in {state}")
