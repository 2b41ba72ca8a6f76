"""The shape of a Kubernetes object as this code base holds it."""

from __future__ import annotations

from typing import Any, TypeAlias

# An object as the API server sends it (decoded JSON). Typed helpers read it; nothing round-trips it
# through a model that could drop fields the user set.
Obj: TypeAlias = dict[str, Any]
