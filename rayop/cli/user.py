"""User-facing commands (`rayop logs`, `rayop exec`, `rayop demo`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the user commands to the top-level app."""
    _ = app
