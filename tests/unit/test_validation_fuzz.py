"""Property-based fuzzing of rayop.validation: generated and mutated manifests never raise, and every
rejection names a field path. The counts are asserted so the suite really runs >= 10,000 manifests."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rayop.validation import _shape as S
from rayop.validation import validate, warnings_for
from tests.unit.validation_cases import BASES

KINDS = ("RayCluster", "RayJob", "RayService")
SPEC_SCHEMAS = {"RayCluster": S.RAYCLUSTER_SPEC, "RayJob": S.RAYJOB_SPEC, "RayService": S.RAYSERVICE_SPEC}
ROOTS = ("metadata", "spec", "object", "status", "kind")
COUNTS = {"mutated": 0, "generated": 0}


def _paths(schema: S.Schema, prefix: list[Any], out: list[list[Any]], depth: int = 0) -> None:
    if depth > 8:
        return
    out.append(prefix)
    if schema[0] == "obj":
        for key, sub in schema[1].items():
            _paths(sub, [*prefix, key], out, depth + 1)
    elif schema[0] == "list":
        _paths(schema[1], [*prefix, 0], out, depth + 1)
        _paths(schema[1], [*prefix, 1], out, depth + 1)
    elif schema[0] == "map":
        _paths(schema[1], [*prefix, "ray.io/ft-enabled"], out, depth + 1)
        _paths(schema[1], [*prefix, "num-cpus"], out, depth + 1)


PATHS: dict[str, list[list[Any]]] = {}
for _kind, _schema in SPEC_SCHEMAS.items():
    _out: list[list[Any]] = []
    _paths(_schema, ["spec"], _out)
    _paths(S.METADATA, ["metadata"], _out)
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
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([-1, 0, 1, 2, 100, 2**31 - 1, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(INTERESTING_STRINGS),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["name", "value", "groupName", "policy", "condition", "mode", "x"])
            | st.text(max_size=6),
            children,
            max_size=3,
        ),
    ),
    max_leaves=5,
)


def _set(obj: Any, path: list[Any], value: Any, delete: bool) -> None:
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


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any, Any]:
    kind = draw(st.sampled_from(KINDS))
    obj = BASES[kind]()
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        path = draw(st.sampled_from(PATHS[kind]))
        _set(obj, path, draw(json_value), draw(st.booleans()) and draw(st.booleans()))
    old = None
    if draw(st.booleans()):
        old = BASES[kind]()
        path = draw(st.sampled_from(PATHS[kind]))
        _set(old, path, draw(json_value), False)
    gates = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(
                    [
                        "RayJobDeletionPolicy",
                        "RayClusterMTLS",
                        "GCSFaultToleranceEmbeddedStorage",
                        "RayClusterNetworkPolicy",
                        "RayClusterHistoryServer",
                        "RayServiceIncrementalUpgrade",
                    ]
                ),
                st.booleans(),
            ),
        )
    )
    return kind, (obj, gates), old


def check(kind: str, obj: Any, gates: Any, old: Any) -> None:
    snapshot = json.dumps(obj, sort_keys=True, default=repr)
    errors = validate(kind, obj, gates=gates, old=old)
    for e in errors:
        assert e.path and e.path.split(".")[0].split("[")[0] in ROOTS, e
        assert str(e).startswith(e.path + ": ")
        assert "internal validation error" not in e.message, e
    warns = warnings_for(kind, obj, old)
    assert all(isinstance(w, str) and w for w in warns)
    assert not any(w.startswith("warnings could not be computed") for w in warns), warns
    # Validation is pure: it must not modify what it is given.
    assert json.dumps(obj, sort_keys=True, default=repr) == snapshot


FUZZ = settings(
    max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


@FUZZ
@given(mutated())
def test_mutated_manifests(case: tuple[str, Any, Any]) -> None:
    kind, (obj, gates), old = case
    COUNTS["mutated"] += 1
    check(kind, obj, gates, old)


@settings(
    max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
@given(st.sampled_from(KINDS), json_value, st.one_of(st.none(), json_value))
def test_generated_values(kind: str, spec: Any, meta: Any) -> None:
    COUNTS["generated"] += 1
    obj = {"apiVersion": "ray.io/v1", "kind": kind, "metadata": meta, "spec": spec}
    check(kind, obj, None, None)
    check(kind, spec, None, copy.deepcopy(obj))


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


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 2 and r < 0.15:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and r < 0.3:
        keys = ["name", "value", "groupName", "policy", "condition", "mode", "image", "x"]
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return copy.deepcopy(rng.choice(LEAVES))  # shared containers would alias (and can cycle)


@settings(
    max_examples=7100, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
@given(st.sampled_from(KINDS), st.integers(min_value=0, max_value=2**64))
def test_seeded_mutations_of_every_field(kind: str, seed: int) -> None:
    """Cheap per example: hypothesis picks the seed (and shrinks it), a seeded RNG picks 3-12 mutations."""
    COUNTS["mutated"] += 1
    rng = random.Random(seed)
    obj = BASES[kind]()
    old = BASES[kind]() if rng.random() < 0.3 else None
    for _ in range(rng.randint(3, 12)):
        _set(obj, rng.choice(PATHS[kind]), _random_value(rng), rng.random() < 0.15)
    if old is not None:
        _set(old, rng.choice(PATHS[kind]), _random_value(rng), False)
    gates = {
        g: rng.random() < 0.5
        for g in (
            "RayClusterNetworkPolicy",
            "RayClusterMTLS",
            "RayClusterHistoryServer",
            "GCSFaultToleranceEmbeddedStorage",
            "RayJobDeletionPolicy",
        )
    }
    check(kind, obj, gates, old)


def test_fuzz_counts() -> None:
    """Runs last in this module (pytest keeps file order): at least 10,000 manifests went through."""
    total = COUNTS["mutated"] + COUNTS["generated"]
    if total == 0:
        return  # the fuzz tests were deselected
    assert total >= 10_000, COUNTS
