"""`rayop local up|status|down`: the embedded control plane for users, in the background."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from rayop.local.plane import ControlPlane, PlaneError, PlaneOptions, running_plane, stop_recorded

app = typer.Typer(no_args_is_help=True)

DEFAULT_DIR = Path(os.environ.get("RAYOP_LOCAL_DIR", str(Path.home() / ".rayop" / "local")))


def _dir(d: Path | None) -> Path:
    return (d or DEFAULT_DIR).expanduser().resolve()


@app.command()
def up(
    dir: Path | None = typer.Option(None, "--dir", help="State folder (default ~/.rayop/local)."),
    controller_manager: bool = typer.Option(True, help="Also run kube-controller-manager (GC, Jobs)."),
) -> None:
    """Start the local plane in the background and print how to use it."""
    state = _dir(dir)
    existing = running_plane(state)
    if existing:
        typer.echo(f"a local plane is already running in {state} ({existing.server})")
        typer.echo(f"export KUBECONFIG={existing.kubeconfig}")
        return
    # A previous plane that died leaves a stale record; clear it so `down` does not chase old PIDs.
    stop_recorded(state)
    plane = ControlPlane(PlaneOptions(state_dir=state, controller_manager=controller_manager))
    try:
        plane.start()
    except PlaneError as e:
        plane.stop()
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"local plane up: {plane.server} (Kubernetes {plane.version}), state in {state}")
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
