"""`rayop webhook`."""

from __future__ import annotations

import typer


def run_webhook() -> None:
    """Run the webhook (not built yet)."""
    typer.echo("rayop webhook: not implemented yet", err=True)
    raise typer.Exit(2)
