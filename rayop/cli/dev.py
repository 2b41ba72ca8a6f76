"""rayop dev commands."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import typer

from rayop.api import crdgen
from rayop.local.openapi import fetch_documents
from rayop.runtime.client import ApiClient, ApiError, load_kubeconfig

app = typer.Typer(no_args_is_help=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRD_DIR = REPO_ROOT / "config" / "crd"


async def _fetch(kubeconfig: Path | None) -> list[dict[str, Any]]:
    async with ApiClient(load_kubeconfig(str(kubeconfig) if kubeconfig else None)) as client:
        return await fetch_documents(client)


def _documents_from_plane() -> list[dict[str, Any]]:
    # Imported here: starting a plane needs the Go-built binaries, which the other modes do not.
    from rayop.local.plane import temporary_plane

    with (
        tempfile.TemporaryDirectory(prefix="rayop-gen-crds-") as tmp,
        temporary_plane(Path(tmp), install_crds=False, controller_manager=False) as plane,
    ):
        return asyncio.run(_fetch(plane.kubeconfig))


def write_crds(documents: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Render the CRDs and write the files that changed; returns file name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, text in crdgen.render(documents).items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written[name] = path
    return written


@app.command("gen-crds")
def gen_crds(
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Read the OpenAPI documents from this cluster's API server."
    ),
    openapi: list[Path] = typer.Option(
        [],
        "--openapi",
        help="Read OpenAPI v3 documents from files instead (repeat it; one file each for "
        + ", ".join(f"/openapi/v3/{p}" for p in crdgen.REQUIRED_DOCUMENTS)
        + ", as `kubectl get --raw` prints them).",
    ),
    out: Path = typer.Option(DEFAULT_CRD_DIR, "--out", help="Folder that receives the CRD files."),
) -> None:
    """Generate the RayCluster, RayJob and RayService CRDs from a real API server's pod schema.

    Without --kubeconfig or --openapi a temporary local control plane is started to read them from.
    """
    if kubeconfig and openapi:
        typer.echo("error: give --kubeconfig or --openapi, not both", err=True)
        raise typer.Exit(2)
    try:
        if openapi:
            documents = [json.loads(p.read_text()) for p in openapi]
        elif kubeconfig:
            documents = asyncio.run(_fetch(kubeconfig))
        else:
            documents = _documents_from_plane()
        written = write_crds(documents, out)
    except (crdgen.SchemaError, ApiError, OSError, ValueError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    version = crdgen.kubernetes_version(documents)
    for path in written.values():
        typer.echo(f"{path} ({path.stat().st_size} bytes, Kubernetes {version} pod schema)")
