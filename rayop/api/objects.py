"""Copying Kubernetes objects held as plain dicts."""

from __future__ import annotations

import copy
from typing import TypeVar

import orjson

T = TypeVar("T")


def clone(obj: T) -> T:
    """A deep copy of JSON-shaped data (what the API server sends and the builders make).

    An orjson round trip copies a pod about seven times faster than `copy.deepcopy`, which matters
    when every reconcile copies its cluster and every built pod copies its group's template. Anything
    orjson refuses (non-string keys, integers beyond 64 bits, other types) falls back to
    `copy.deepcopy`; a tuple inside the data comes back as a list, as it would from the API server.
    """
    try:
        out = orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)
    if type(out) is not type(obj):  # a tuple became a list
        return copy.deepcopy(obj)
    return out  # type: ignore[no-any-return]
