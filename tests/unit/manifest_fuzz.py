"""Random edits of Ray manifests, shared by the validation fuzz tests and the live-webhook fuzz test."""

from __future__ import annotations

import copy
import random
from typing import Any

from rayop.validation import _shape as S

KINDS = ("RayCluster", "RayJob", "RayService")
SPEC_SCHEMAS = {"RayCluster": S.RAYCLUSTER_SPEC, "RayJob": S.RAYJOB_SPEC, "RayService": S.RAYSERVICE_SPEC}


def schema_paths(schema: S.Schema, prefix: list[Any], out: list[list[Any]], depth: int = 0) -> None:
    if depth > 8:
        return
    out.append(prefix)
    if schema[0] == "obj":
        for key, sub in schema[1].items():
            schema_paths(sub, [*prefix, key], out, depth + 1)
    elif schema[0] == "list":
        schema_paths(schema[1], [*prefix, 0], out, depth + 1)
        schema_paths(schema[1], [*prefix, 1], out, depth + 1)
    elif schema[0] == "map":
        schema_paths(schema[1], [*prefix, "ray.io/ft-enabled"], out, depth + 1)
        schema_paths(schema[1], [*prefix, "num-cpus"], out, depth + 1)


PATHS: dict[str, list[list[Any]]] = {}
for _kind, _schema in SPEC_SCHEMAS.items():
    _out: list[list[Any]] = []
    schema_paths(_schema, ["spec"], _out)
    schema_paths(S.METADATA, ["metadata"], _out)
    PATHS[_kind] = _out

INTERESTING_STRINGS = [
    "",
    "true",
    "1",
    "v2",
    "v1",
    "rocksdb",
    "redis",
    "token",
    "Never",
    "Always",
    "SidecarMode",
    "InteractiveMode",
    "HTTPMode",
    "DeleteWorkers",
    "DeleteCluster",
    "DeleteSelf",
    "DeleteNone",
    "SUCCEEDED",
    "FAILED",
    "Failed",
    "NewClusterWithIncrementalUpgrade",
    "Recreate",
    "DenyAllEgress",
    "DenyAllIngress",
    "RAY_REDIS_ADDRESS",
    "RAY_enable_autoscaler_v2",
    "REDIS_PASSWORD",
    "RAY_USE_TLS",
    "gcs-storage",
    "/data/gcs",
    "ray-tls",
    "/etc/ray/tls",
    "STORAGE_BACKEND",
    "AZUREBLOB",
    "ray-history-collector",
    "2.56.0",
    "2.51.0",
    "nightly",
    "applications:\n- name: a\n  importPath: x\n",
    "- a\n",
    "{",
    "a: [",
    "5m",
    "-1s",
    "0",
    "Bad_Name",
    "x" * 70,
    "ray start --head",
    "kueue.x-k8s.io/multikueue",
    "ray.io/kuberay-operator",
    "\u00b5s",
    "\x00",
]


def set_at(obj: Any, path: list[Any], value: Any, delete: bool) -> None:
    cur = obj
    for i, p in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(cur, dict) and not isinstance(p, int):
            if not isinstance(cur.get(p), (dict, list)):
                cur[p] = [] if isinstance(nxt, int) else {}
            cur = cur[p]
        elif isinstance(cur, list) and isinstance(p, int):
            while len(cur) <= p:
                cur.append({})
            if not isinstance(cur[p], (dict, list)):
                cur[p] = [] if isinstance(nxt, int) else {}
            cur = cur[p]
        else:
            return
    last = path[-1]
    if isinstance(cur, dict) and not isinstance(last, int):
        if delete:
            cur.pop(last, None)
        else:
            cur[last] = value
    elif isinstance(cur, list) and isinstance(last, int):
        while len(cur) <= last:
            cur.append({})
        if delete:
            del cur[last]
        else:
            cur[last] = value


LEAVES: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    2,
    3,
    100,
    2**31 - 1,
    2**31,
    -(2**40),
    0.5,
    float("nan"),
    [],
    {},
    [{}],
    {"name": "x"},
    *INTERESTING_STRINGS,
]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 2 and r < 0.15:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and r < 0.3:
        keys = ["name", "value", "groupName", "policy", "condition", "mode", "image", "x"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return copy.deepcopy(rng.choice(LEAVES))  # shared containers would alias (and can cycle)


def typed_leaves(schema: Any, prefix: list[Any], out: list[tuple[list[Any], str]], depth: int = 0) -> None:
    """Paths of scalar fields with their type, for edits that keep a manifest schema-valid by type."""
    if depth > 8:
        return
    kind = schema[0]
    if kind == "obj":
        for key, sub in schema[1].items():
            typed_leaves(sub, [*prefix, key], out, depth + 1)
    elif kind == "list":
        typed_leaves(schema[1], [*prefix, 0], out, depth + 1)
        typed_leaves(schema[1], [*prefix, 1], out, depth + 1)
    elif kind == "map":
        for key in (
            "ray.io/ft-enabled",
            "ray.io/initializing-timeout",
            "num-cpus",
            "labels",
            "redis-password",
        ):
            typed_leaves(schema[1], [*prefix, key], out, depth + 1)
    elif kind in ("str", "int32", "bool"):
        out.append((prefix, kind))


def typed_value(rng: random.Random, kind: str) -> Any:
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int32":
        return rng.choice([-1, 0, 0, 1, 1, 2, 3, 5, 30, 100, 101])
    return rng.choice(INTERESTING_STRINGS)
