"""Help that reads cleanly: typer's rich help prints a value type after every option, flags included, so
`--help` and `-f` showed a `<bool>` placeholder although they take no value. Flags (and counters) get no
type column; options that take a value keep theirs."""

from __future__ import annotations

from collections.abc import Callable

import typer
from typer.core import TyperOption

_original: Callable[[TyperOption, typer.Context], str | None] = TyperOption.display_type_rich


def _display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
    if self.is_flag or self.count:
        return None
    return _original(self, ctx)


def install() -> None:
    setattr(TyperOption, "display_type_rich", _display_type_rich)  # noqa: B010 (mypy: no method assignment)
