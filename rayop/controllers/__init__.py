"""The reconcilers, one per kind. `setup` registers them all on a runtime Manager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rayop.controllers import raycluster, rayjob

# Each entry registers one controller: setup(manager, config). Keep it a plain list.
SETUPS: list[Callable[[Any, Any], Any]] = [
    raycluster.setup,
    rayjob.setup,
]


def setup(manager: Any, config: Any = None) -> list[Any]:
    """Register every controller on `manager`; returns the controllers."""
    return [fn(manager, config) for fn in SETUPS]
