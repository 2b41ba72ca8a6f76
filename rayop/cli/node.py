"""`rayop node`."""

from __future__ import annotations

import typer


def run_node() -> None:
    """Run the node (not built yet)."""
    typer.echo("rayop node: not implemented yet", err=True)
    raise typer.Exit(2)
