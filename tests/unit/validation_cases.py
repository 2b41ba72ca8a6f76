"""Shared manifests and a tiny path-setter for the validation tests (unit and fuzz)."""

from __future__ import annotations

import copy
import re
from typing import Any

DEL = object()

HEAD_CONTAINER = {"name": "ray-head", "image": "rayproject/ray:2.60.0"}
WORKER_CONTAINER = {"name": "ray-worker", "image": "rayproject/ray:2.60.0"}


def cluster_spec() -> dict[str, Any]:
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [dict(HEAD_CONTAINER)]}}},
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 1,
                "rayStartParams": {},
                "template": {"spec": {"containers": [dict(WORKER_CONTAINER)]}},
            }
        ],
    }


def raycluster() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "demo"},
        "spec": cluster_spec(),
    }


def rayjob() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "job"},
        "spec": {"entrypoint": "python -c 'print(1)'", "rayClusterSpec": cluster_spec()},
    }


SERVE_CONFIG = "applications:\n  - name: app\n    import_path: pkg.mod:app\n    route_prefix: /\n"


def rayservice() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc"},
        "spec": {"serveConfigV2": SERVE_CONFIG, "rayClusterConfig": cluster_spec()},
    }


BASES = {"RayCluster": raycluster, "RayJob": rayjob, "RayService": rayservice}
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _tokens(path: str) -> list[str | int]:
    out: list[str | int] = []
    for m in _TOKEN.finditer(path):
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return out


def setp(obj: Any, path: str, value: Any) -> None:
    """Set (or delete with DEL) a dotted path like ``spec.workerGroupSpecs[0].minReplicas``; keys may be
    quoted with '' to contain dots: ``metadata.annotations.'ray.io/ft-enabled'``."""
    parts: list[str | int] = []
    for chunk in re.split(r"(\'[^\']*\')", path):
        if chunk.startswith("'"):
            parts.append(chunk.strip("'"))
        elif chunk:
            parts.extend(_tokens(chunk))
    cur = obj
    for i, p in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(p, int):
            while len(cur) <= p:
                cur.append({})
            cur = cur[p]
        else:
            if p not in cur or cur[p] is None:
                cur[p] = [] if isinstance(nxt, int) else {}
            cur = cur[p]
    last = parts[-1]
    if value is DEL:
        if isinstance(last, int):
            del cur[last]
        else:
            cur.pop(last, None)
    elif isinstance(last, int):
        while len(cur) <= last:
            cur.append({})
        cur[last] = value
    else:
        cur[last] = value


def build(kind: str, changes: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(base) if base is not None else BASES[kind]()
    for path, value in changes.items():
        setp(obj, path, value if value is DEL else copy.deepcopy(value))
    return obj
