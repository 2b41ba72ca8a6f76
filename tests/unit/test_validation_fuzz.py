"""Property-based fuzzing of rayop.validation: generated and mutated manifests never raise, and every
rejection names a field path. The counts are asserted so the suite really runs >= 10,000 manifests."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rayop.validation import validate, warnings_for
from tests.unit.manifest_fuzz import INTERESTING_STRINGS, KINDS, PATHS, random_value, set_at
from tests.unit.validation_cases import BASES

ROOTS = ("metadata", "spec", "object", "status", "kind")
COUNTS = {"mutated": 0, "generated": 0, "seeded": 0}


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


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any, Any]:
    kind = draw(st.sampled_from(KINDS))
    obj = BASES[kind]()
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        path = draw(st.sampled_from(PATHS[kind]))
        set_at(obj, path, draw(json_value), draw(st.booleans()) and draw(st.booleans()))
    old = None
    if draw(st.booleans()):
        old = BASES[kind]()
        path = draw(st.sampled_from(PATHS[kind]))
        set_at(old, path, draw(json_value), False)
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


@settings(
    max_examples=7100, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
@given(st.sampled_from(KINDS), st.integers(min_value=0, max_value=2**64))
def test_seeded_mutations_of_every_field(kind: str, seed: int) -> None:
    """Cheap per example: hypothesis picks the seed (and shrinks it), a seeded RNG picks 3-12 mutations."""
    COUNTS["seeded"] += 1
    rng = random.Random(seed)
    obj = BASES[kind]()
    old = BASES[kind]() if rng.random() < 0.3 else None
    for _ in range(rng.randint(3, 12)):
        set_at(obj, rng.choice(PATHS[kind]), random_value(rng), rng.random() < 0.15)
    if old is not None:
        set_at(old, rng.choice(PATHS[kind]), random_value(rng), False)
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
    """Runs after the fuzz tests in this module: together they put >= 10,000 manifests through validation.
    Under pytest-xdist the tests may land on different workers; then this process cannot count them all."""
    if not all(COUNTS.values()):
        pytest.skip(f"not every fuzz test ran in this process: {COUNTS}")
    assert sum(COUNTS.values()) >= 10_000, COUNTS
