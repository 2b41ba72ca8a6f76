"""`rayop local up|status|down`: the embedded control plane for users, in the background."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from rayop.api import features
from rayop.local import metrics_server
from rayop.local.pki import issue_serving_cert
from rayop.local.plane import (
    ControlPlane,
    PlaneError,
    PlaneOptions,
    audit_args,
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


UI_URL_FILE = "ui-url"


def ui_url(state: Path) -> str:
    """The web view's address of the operator `local up` started in `state`, or ""."""
    try:
        return (state / UI_URL_FILE).read_text().strip()
    except OSError:
        return ""


def _start_operator(state: Path, kubeconfig: Path, feature_gates: str = "") -> str:
    metrics, health, webhook, ui = pick_free_ports(4)
    gates = [f"--feature-gates={feature_gates}"] if feature_gates else []
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
            # The web view, on loopback (no sign-in needed there).
            f"--ui-port={ui}",
            "--ui-host=127.0.0.1",
            *gates,
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
    (state / UI_URL_FILE).write_text(f"http://127.0.0.1:{ui}/\n")
    return f"operator (metrics 127.0.0.1:{metrics}, health 127.0.0.1:{health}, webhook 127.0.0.1:{webhook})"


def _start_node(state: Path, plane: ControlPlane, node: NodeSpec) -> str:
    assert plane.pki
    kubeconfig = plane.kubeconfig
    ray_env = os.environ.get("RAYOP_RAY_ENV")
    gateway = _gateway(node.pod_cidr)
    # The kubelet API's certificate names the node's InternalIP (the bridge gateway), where the API
    # server and metrics-server connect, and comes from the CA they verify it with.
    crt, key = issue_serving_cert(plane.pki, f"kubelet-{node.name}", [gateway, node.name])
    args = [
        sys.executable,
        "-m",
        "rayop.cli.main",
        "node",
        f"--kubeconfig={kubeconfig}",
        f"--name={node.name}",
        f"--state-dir={state / 'node'}",
        f"--pod-cidr={node.pod_cidr}",
        f"--bridge={node.bridge}",
        # Pods are processes sharing the machine's cores; advertise more CPU than there are cores so
        # a small Ray cluster (1 CPU per pod in the examples) fits on a 2-core laptop.
        f"--cpu={os.environ.get('RAYOP_LOCAL_NODE_CPU', '16')}",
        f"--kubelet-port={node.kubelet_port}",
        f"--tls-cert-file={crt}",
        f"--tls-private-key-file={key}",
        f"--client-ca-file={plane.pki.client_ca}",
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
                node.name,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            ],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() == "True"

    _wait(ready, 90, "node agent", state / "logs" / "node-agent.log")
    return (
        f"node agent {node.name} (pods on {node.pod_cidr}, kubelet API https://{gateway}:{node.kubelet_port})"
    )


def _start_metrics_server(plane: ControlPlane, timeout: float = 180.0) -> str:
    if not metrics_server.binary_path().exists():
        typer.echo("building metrics-server from its Go module (once; a few minutes)...", err=True)
    metrics_server.install(plane, timeout)
    return f"metrics-server {metrics_server.default_version()} (kubectl top)"


def _dir(d: Path | None) -> Path:
    return (d or DEFAULT_DIR).expanduser().resolve()


def audit_options(state: Path, policy: Path | None, log_path: Path | None) -> list[str]:
    """The API server's audit flags for `local up --audit-policy-file/--audit-log-path` (none without a
    policy). Paths are made absolute: the API server does not run in the caller's folder."""
    if policy is None:
        if log_path is not None:
            raise typer.BadParameter("needs --audit-policy-file too", param_hint="--audit-log-path")
        return []
    policy = policy.expanduser().resolve()
    if not policy.is_file():
        raise typer.BadParameter(f"{policy} is not a file", param_hint="--audit-policy-file")
    log_path = (log_path or state / "logs" / "audit.log").expanduser().resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return audit_args(policy, log_path)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pod_cidr: str
    bridge: str
    kubelet_port: int


@app.command()
def up(
    dir: Annotated[Path | None, typer.Option("--dir", help="State folder (default ~/.rayop/local).")] = None,
    controller_manager: Annotated[
        bool, typer.Option(help="Also run kube-controller-manager (GC, Jobs, HPA).")
    ] = True,
    operator: Annotated[bool, typer.Option(help="Also run the rayop operator.")] = True,
    node: Annotated[
        bool, typer.Option(help="Also run a node agent that runs Pods as processes (needs root).")
    ] = True,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics-server/--no-metrics-server", help="Also run metrics-server (kubectl top, HPA)."
        ),
    ] = True,
    node_name: Annotated[str, typer.Option(help="The node agent's Node name.")] = NODE_NAME,
    pod_cidr: Annotated[
        str, typer.Option(help="The node agent's pod network (a free private /24).")
    ] = POD_CIDR,
    bridge: Annotated[str, typer.Option(help="The bridge the node agent creates for its pods.")] = "rayop0",
    kubelet_port: Annotated[int, typer.Option(help="Port of the node agent's kubelet API.")] = 10250,
    feature_gates: Annotated[
        str,
        typer.Option(
            "--feature-gates",
            help="The operator's feature gates (Name=true,Name=false). With RayServiceIncrementalUpgrade on "
            "(the default) the plane also gets the Gateway API's CRDs.",
        ),
    ] = "",
    audit_policy_file: Annotated[
        Path | None,
        typer.Option(
            help="Audit the API requests this kube-apiserver audit Policy selects (e.g. those of the chart's "
            "ServiceAccount, to see which permissions the operator uses)."
        ),
    ] = None,
    audit_log_path: Annotated[
        Path | None,
        typer.Option(help="Where the audit log goes (JSON lines; default: <dir>/logs/audit.log)."),
    ] = None,
) -> None:
    """Start the local plane (and the operator, a node agent and metrics-server) in the background.

    Several local planes can run at once with different --dir, --node-name, --pod-cidr and --bridge."""
    try:
        gates = features.resolve_gates(features.parse_feature_gates(feature_gates))
    except ValueError as e:
        typer.echo(f"error: --feature-gates: {e}", err=True)
        raise typer.Exit(2) from e
    state = _dir(dir)
    existing = running_plane(state)
    if existing:
        typer.echo(f"a local plane is already running in {state} ({existing.server})")
        typer.echo(f"export KUBECONFIG={existing.kubeconfig}")
        if "operator" in existing.pids and ui_url(state):
            typer.echo(f"web view: {ui_url(state)}")
        return
    # A previous plane that died leaves a stale record; clear it so `down` does not chase old PIDs.
    stop_recorded(state)
    (state / UI_URL_FILE).unlink(missing_ok=True)
    if node and os.geteuid() != 0:
        typer.echo("note: not root, so no node agent (pods will stay Pending)", err=True)
        node = False
    if metrics and not node:
        typer.echo("note: no node agent, so no metrics-server (kubectl top will fail)", err=True)
        metrics = False
    nspec = NodeSpec(node_name, pod_cidr, bridge, kubelet_port)
    audit = audit_options(state, audit_policy_file, audit_log_path)
    plane = ControlPlane(
        PlaneOptions(
            state_dir=state,
            controller_manager=controller_manager or node,
            # Pods started by the node agent reach the API server through the bridge gateway and
            # authenticate with their service-account token, as in a real cluster.
            extra_ips=[_gateway(pod_cidr)] if node else [],
            service_account_admission=node,
            gateway_api=gates[features.RAY_SERVICE_INCREMENTAL_UPGRADE],
            extra_apiserver_args=audit,
        )
    )
    try:
        plane.start()
        parts = [f"plane {plane.server} (Kubernetes {plane.version})"]
        if operator:
            parts.append(_start_operator(state, plane.kubeconfig, feature_gates))
        if node:
            parts.append(_start_node(state, plane, nspec))
        if metrics:
            parts.append(_start_metrics_server(plane))
    except (PlaneError, KeyboardInterrupt) as e:
        stop_recorded(state)
        plane.stop()
        typer.echo(
            f"error: {e}" if isinstance(e, PlaneError) else "interrupted; stopped what had started", err=True
        )
        raise typer.Exit(1) from e
    typer.echo("local up: " + "; ".join(parts) + f"; state in {state}")
    typer.echo(f"export KUBECONFIG={plane.kubeconfig}")
    if operator:
        typer.echo(f"web view: {ui_url(state)}")


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
    if "operator" in st.pids and ui_url(state):
        typer.echo(f"web view: {ui_url(state)}")


@app.command()
def down(dir: Path | None = typer.Option(None, "--dir")) -> None:
    """Stop everything `rayop local up` started, by PID."""
    state = _dir(dir)
    stopped = stop_recorded(state)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running in {state}")
