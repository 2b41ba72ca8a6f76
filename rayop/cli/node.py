"""`rayop node`: the local node agent (a small kubelet that runs Pods as processes)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer


def _kv(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"{what} must be KEY=VALUE, got {it!r}")
        out[k] = v
    return out


def run_node(
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig of the API server.")] = None,
    name: Annotated[str, typer.Option(help="Node name.")] = "rayop-node",
    state_dir: Annotated[
        Path | None, typer.Option(help="Pod state and logs (default /var/lib/rayop/nodes/NAME).")
    ] = None,
    bridge: Annotated[str, typer.Option(help="Bridge interface the agent owns.")] = "rayop0",
    pod_cidr: Annotated[
        str, typer.Option(help="Private pod network; the bridge takes the first address.")
    ] = ("10.213.0.0/24"),
    python_env: Annotated[
        Path | None, typer.Option(help="Python environment whose bin/ leads PATH in containers (has `ray`).")
    ] = None,
    image_env: Annotated[
        list[str],
        typer.Option(
            help="IMAGE=PATH: containers of this image (or repository, any tag) run with the environment "
            "at PATH instead of --python-env, e.g. rayop=/path/to/venv for the operator chart (repeatable)."
        ),
    ] = [],  # noqa: B006
    cpu: Annotated[str | None, typer.Option(help="CPU capacity (default: the machine's cores).")] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory capacity, e.g. 16Gi (default: the machine's).")
    ] = None,
    max_pods: Annotated[int, typer.Option(help="Pod capacity.")] = 110,
    api_host: Annotated[
        str | None, typer.Option(help="API server address given to pods (default: gateway).")
    ] = None,
    api_port: Annotated[int | None, typer.Option(help="API server port given to pods.")] = None,
    label: Annotated[list[str], typer.Option(help="Node label KEY=VALUE (repeatable).")] = [],  # noqa: B006
    env: Annotated[
        list[str], typer.Option(help="Default container env KEY=VALUE, like an image's ENV (repeatable).")
    ] = [],  # noqa: B006
    backoff: Annotated[float, typer.Option(help="Initial restart back-off in seconds.")] = 10.0,
    cgroups: Annotated[
        bool,
        typer.Option(
            "--cgroups/--no-cgroups",
            help="Per-container cgroups (v1): memory limits, and CPU/memory usage for the kubelet API.",
        ),
    ] = True,
    kubelet_port: Annotated[
        int, typer.Option(help="Port of the kubelet API on the node's InternalIP (0: no kubelet API).")
    ] = 10250,
    tls_cert_file: Annotated[
        Path | None, typer.Option(help="Serving certificate of the kubelet API (default: self-signed).")
    ] = None,
    tls_private_key_file: Annotated[Path | None, typer.Option(help="Its private key.")] = None,
    client_ca_file: Annotated[
        Path | None,
        typer.Option(help="CA whose client certificates the kubelet API accepts (bearer tokens always are)."),
    ] = None,
    keep_pods: Annotated[
        bool, typer.Option("--keep-pods", help="On exit leave pods running for the next agent to re-adopt.")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", help="Debug logging.")] = False,
) -> None:
    """Run the local node agent: registers a Node and runs its Pods as real processes (needs root)."""
    # Imported here so that other commands start without loading the node agent.
    from rayop.node.agent import NodeAgent, NodeConfig, default_python_env

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    default_env = {"RAY_USAGE_STATS_ENABLED": "0", **_kv(env, "--env")}
    cfg = NodeConfig(
        name=name,
        kubeconfig=kubeconfig,
        state_dir=state_dir,
        bridge=bridge,
        pod_cidr=pod_cidr,
        python_env=python_env or default_python_env(),
        image_envs={k: Path(v) for k, v in _kv(image_env, "--image-env").items()},
        cpu=cpu,
        memory=memory,
        max_pods=max_pods,
        api_host=api_host,
        api_port=api_port,
        labels=_kv(label, "--label"),
        default_env=default_env,
        backoff_initial=backoff,
        cgroups=cgroups,
        cleanup_on_stop=not keep_pods,
        kubelet_port=kubelet_port,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_private_key_file,
        client_ca_file=client_ca_file,
    )
    if (tls_cert_file is None) != (tls_private_key_file is None):
        raise typer.BadParameter("--tls-cert-file and --tls-private-key-file go together")

    async def main() -> None:
        agent = NodeAgent(cfg)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    asyncio.run(main())
