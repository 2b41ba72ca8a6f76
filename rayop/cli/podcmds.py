"""`rayop logs` and `rayop exec`: read a container's logs and run commands in it, on the local node
(the node agent keeps both on this machine; there is no kubelet API to go through)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Annotated

import typer

from rayop.node import containers
from rayop.node.locate import ContainerLocation, LocateError, locate
from rayop.runtime.client import ApiClient, load_config


async def _locate(
    kubeconfig: str | None, namespace: str | None, pod: str, container: str | None
) -> ContainerLocation:
    cfg = load_config(kubeconfig)
    async with ApiClient(cfg, user_agent="rayop-cli") as client:
        return await locate(client, namespace or cfg.namespace, pod, container)


def _find(
    kubeconfig: str | None, namespace: str | None, pod: str, container: str | None
) -> ContainerLocation:
    try:
        return asyncio.run(_locate(kubeconfig, namespace, pod, container))
    except LocateError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def logs(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    container: Annotated[str | None, typer.Option("-c", "--container", help="Container name.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="Namespace.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new output.")] = False,
    previous: Annotated[bool, typer.Option("-p", "--previous", help="The previous run's output.")] = False,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig (default: $KUBECONFIG).")] = None,
) -> None:
    """Print a container's output, kept on disk by the local node agent."""
    loc = _find(kubeconfig, namespace, pod, container)
    attempt = loc.attempt - 1 if previous else loc.attempt
    if attempt < 0:
        typer.echo(f'error: previous terminated container "{loc.container}" not found', err=True)
        raise typer.Exit(1)
    path = loc.run_dir(attempt) / "log"
    out = sys.stdout.buffer
    pos = 0
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            out.write(chunk)
            out.flush()
            pos += len(chunk)
        if not follow or previous:
            return
        if not chunk:
            try:
                loc.refresh()
            except LocateError:
                return
            # Like kubectl: following ends when the container stops.
            if not loc.running:
                return
            time.sleep(0.2)


def exec_(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    command: Annotated[list[str], typer.Argument(help="Command and arguments (after --).")],
    container: Annotated[str | None, typer.Option("-c", "--container", help="Container name.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="Namespace.")] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig (default: $KUBECONFIG).")] = None,
) -> None:
    """Run a command inside a running container (its namespaces, environment and working directory)."""
    loc = _find(kubeconfig, namespace, pod, container)
    if not loc.running:
        typer.echo(f'error: container "{loc.container}" in pod "{pod}" is not running', err=True)
        raise typer.Exit(1)
    argv = containers.exec_argv(loc.pid, loc.spec_path, command)
    sys.stdout.flush()
    os.execv(argv[0], argv)


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
    app.command("exec")(exec_)
