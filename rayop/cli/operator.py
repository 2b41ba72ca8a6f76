"""`rayop operator`."""

from __future__ import annotations

import typer


def run_operator() -> None:
    """Run the operator (not built yet)."""
    typer.echo("rayop operator: not implemented yet", err=True)
    raise typer.Exit(2)
